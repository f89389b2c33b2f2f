"""How an image becomes the bytes of its file: step 5's write, and the image kept after it.

An image of a file in our layout (``worker/catalog_layout.py``) with new entries laid over it
is written as its parts (``parts``): long runs of that file with the new entries between them,
each a buffer for one ``writev``. Once the new entries are many for the file's size, they are
joined into one file instead, and the image becomes the image of that file (``_rebase``): its
entries views of it, their digests carried over.

A mixin of ``worker.catalog_image.CatalogImage``, which holds the state it reads.
"""

from __future__ import annotations

import itertools

from worker.catalog_digest import FileDigests
from worker.catalog_image_digest import DigestList, Entry
from worker.catalog_layout import Cut, entry_end, file_parts

# New entries laid over the file an image was read or written as, beyond which the next write
# joins them into one buffer: each change copies the overlay's index, each write sorts it, and
# every write until the join has two parts an entry (100-record batches at 10,000 products: 363
# parts after one, 6,600 after twenty-one at 2,048). At 512, a 100-record commit at 10,000
# products took 17.7-18.1 ms against 19.1-20.4 ms at 2,048 (one process, 40 commits, in turn);
# at 100,000 products 88.8-94.4 ms against 89.3 ms: the joins it adds cost what the parts did.
REBASE_AT = 512
# Each part of a write is Python work (a view, a writev slot, its digests) of a few
# microseconds, about what copying PART_BYTES of the file costs on 2 shared cores: a small file
# with many new entries is written (and kept) joined, a large one as its parts. At 1,000
# products a joined write is 2-3 ms faster than the thousands of parts of a well-spread overlay.
PART_BYTES = 4 * 1024


class FileParts(DigestList):
    """An image's file: as parts to write, or joined (the module's docstring)."""

    # The entries, as a list or as a file with new entries laid over it, and the file's digests:
    # what writing changes (``_rebase``). Set by ``CatalogImage``.
    __slots__ = ("_entries", "_base", "_fresh", "_digests")

    @property
    def entries(self) -> list[Entry]:
        raise NotImplementedError

    def _segments(self) -> list[tuple[int, int, bytes | None]]:
        """An image of a file in file order: ``(first, stop, None)`` for a run of the file's entries,
        ``(index, index + 1, entry)`` for a new one."""
        assert self._base is not None
        segments: list[tuple[int, int, bytes | None]] = []
        count, at = len(self._base[1].starts), 0
        for index in sorted(self._fresh):
            if at < min(index, count):
                segments.append((at, min(index, count), None))
            segments.append((index, index + 1, self._fresh[index]))
            at = index + 1
        if at < count:
            segments.append((at, count, None))
        return segments

    def to_bytes(self) -> bytes:
        return b"".join(self.parts())

    def parts(self) -> list[Entry]:
        """The file, as buffers to write one after the other: long runs of the file this image was
        read or written as, with the new entries between them (``to_bytes`` joins them). When
        the new entries are many for the file's size, they are joined once, and the image keeps
        the joined file instead."""
        self._parse()
        if self._base is not None and not self._fresh:
            return [self._base[0]]  # the file itself
        if self._base is None or len(self._fresh) > self._overlay_limit():
            self._rebase(b"".join(self._scattered_parts()))
            assert self._base is not None
            return [self._base[0]]
        return self._scattered_parts()

    def _overlay_limit(self) -> int:
        assert self._base is not None
        return min(REBASE_AT, len(self._base[0]) // PART_BYTES)

    def _scattered_parts(self) -> list[Entry]:
        if self._base is None:
            return file_parts(self.entries)
        data, layout = self._base
        view = memoryview(data)
        return file_parts([entry if entry is not None else view[layout.starts[first]:entry_end(data, layout.starts,
                                                                                                 stop - 1)]
                           for first, stop, entry in self._segments()])

    def _file(self) -> tuple[bytes, Cut]:
        """This image as one file in our layout and its cut (the file written for it, once ``sealed_as``)."""
        self._parse()
        if self._base is None or self._fresh:
            self._rebase(b"".join(self._scattered_parts()))
        assert self._base is not None
        return self._base

    def _rebase(self, data: bytes) -> None:
        """Make this image the image of ``data``, its ``to_bytes``: the entries become views of it,
        one buffer instead of the buffers they came from."""
        if self._base is None:
            entries = self.entries
            starts = list(itertools.accumulate((len(entry) + 2 for entry in entries[:-1]), initial=2)) if entries else []
        else:
            old, layout = self._base
            starts, at = [], 2
            for first, stop, entry in self._segments():
                if entry is None:  # a run of the old file: every start moves by the same amount
                    shift = at - layout.starts[first]
                    starts.extend([start + shift for start in layout.starts[first:stop]])
                    at = entry_end(old, layout.starts, stop - 1) + shift + 2
                else:
                    starts.append(at)
                    at += len(entry) + 2
        # The digests of the entries carry over when they are known or cheap to patch (a writer's
        # image): then the next commit hashes only what it changes.
        known = self._listed if self._listed is not None else self._patched_list()
        if known is None and self._digests is not None and self._digests.computed:
            known = self._joined_list()
        self._listed, self._derived = known, None
        self._entries, self._base, self._fresh = None, (data, Cut(self._ids, starts)), {}
        self._digests = FileDigests(data, starts, known)
