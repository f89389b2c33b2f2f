"""An image's digest (worker/catalog_digest.py), from the digests kept beside its entries.

A commit records the digest of the catalog it writes: the sha256 of the list of every entry's
sha256. Hashing every entry again would cost what hashing the file did, so an image gets that
list the cheapest way it can (``_digest_list``):

1. kept: the list computed for this very image (``_listed``);
2. patched: the list of the image it was changed from, in the same order (perhaps with products
   appended), with the entries set since hashed (``_derived``, ``_patched_list``): a copy of 32
   bytes a product and the new entries' digests;
3. joined: the file's kept digests, run by run, with the new entries' between them (an image
   read from a file, reordered, or changed from one whose list is unknown).

A mixin of ``worker.catalog_image.CatalogImage``, which holds the state it reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from worker.catalog_digest import FileDigests, digest_of_list, entry_digest, entry_digests, patched_list
from worker.catalog_layout import Cut

Entry = bytes | memoryview  # an entry, or a buffer of a file's parts


class DigestList:
    """How an image's digest list is had, kept or patched or joined (the module's docstring)."""

    __slots__ = ("_listed", "_derived")
    # Held by the image (``CatalogImage.__slots__``), only read here.
    _ids: list[str]
    _entries: list[Entry] | None
    _base: tuple[bytes, Cut] | None
    _fresh: dict[int, bytes]
    _digests: FileDigests | None

    def __init__(self) -> None:
        self._listed: bytes | None = None  # every entry's digest, in order, once ``digest`` computed them
        # The digest list of an image this one was changed from, in the same order (perhaps with
        # products appended), and the indices set since: this one's is that list, patched there
        # (``_patched_list``). The list only: an image keeps no other image alive.
        self._derived: tuple[bytes, frozenset[int]] | None = None

    def _parse(self) -> None:
        raise NotImplementedError

    def entry(self, index: int) -> Entry:
        raise NotImplementedError

    def _segments(self) -> list[tuple[int, int, bytes | None]]:
        raise NotImplementedError

    def digest(self) -> str:
        """The digest of ``to_bytes()`` (worker/catalog_digest.py), from the digests kept for the file's
        entries and for each new one: a commit hashes what changed, not the whole catalog again."""
        return digest_of_list(self._digest_list())

    def _digest_list(self) -> bytes:
        """Every entry's digest, in order, computed once: the list of the image this one was changed
        from, patched where the change set entries (a copy of 32 bytes a product and the new
        entries' digests, where joining the runs of an overlay of many entries took milliseconds),
        else joined from the file's runs and the new entries."""
        self._parse()
        if self._listed is None:
            patched = self._patched_list()
            self._listed = patched if patched is not None else self._joined_list()
            self._derived = None  # the list it was patched from is no longer needed
        return self._listed

    def _derive(self, indices: Iterable[int]) -> tuple[bytes, frozenset[int]] | None:
        """What an image changed from this one at ``indices`` (same order) derives its digest list from."""
        if self._listed is not None:
            return self._listed, frozenset(indices)
        if self._derived is not None:
            return self._derived[0], self._derived[1].union(indices)
        return None

    def _patched_list(self) -> bytes | None:
        """The digest list this image derives from, patched at every index set since; None when it
        derives from none (read from a file, reordered, or changed from one whose list is unknown)."""
        if self._derived is None:
            return None
        digests = self._file_digests()
        return patched_list(*self._derived, lambda index: entry_digest(self.entry(index)) if digests is None
                            else digests.at(index, self._fresh.get(index)), len(self._ids))

    def _file_digests(self) -> FileDigests | None:
        """The digests kept for the file this image lays its new entries over; None for a list image."""
        return self._digests if self._base is not None else None

    def _joined_list(self) -> bytes:
        digests = self._file_digests()
        if digests is None:
            return entry_digests(self._entries or [])
        if not self._fresh:
            return digests.all()
        return b"".join(digests.run(first, stop) if entry is None else digests.of_new(first, entry)
                        for first, stop, entry in self._segments())
