"""The catalog as a writer keeps it between batches: product ids in order and each product's bytes.

Why bytes and not dicts: a parsed product is a Python object per field, about ten times the
file's size in memory; its serialized bytes are exactly its share of the file. A batch decodes
only the products it touches (``product``), and writing the file re-serializes only those: the
file is the join of every product's bytes (``to_bytes``), byte for byte what
``worker.catalog_file.serialize_catalog`` writes for the same products (a property test checks
it over random catalogs and patches).

Why a file and an overlay, not a list of entries: an image read, cut or written is that file's
bytes and where each entry starts in them (``worker/catalog_layout.py``); a change lays its new
entries over it (``with_changes``). Writing the next file joins a few long runs of the old one
and the new entries, and comparing with another worker's file compares runs: nothing walks the
products one Python object at a time. The list form is for images built from products or reordered.

An image is never changed in place, except that writing it (``sealed_as``) makes it the image
of the file written: ``with_changes`` returns a new one sharing the untouched bytes, so a write
that starts over still has the image it started from.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from worker.catalog_digest import FileDigests, digest_of, digest_of_list
from worker.catalog_file import parse_catalog
from worker.catalog_image_digest import DigestList, Entry
from worker.catalog_index import as_dict, extended
from worker.catalog_layout import Cut, cut, cut_like, entry_bytes, entry_end, file_parts, kept_prefix

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

class CatalogImage(DigestList):
    """An immutable catalog: ``ids`` in file order, each one's serialized entry, and their digest
    (``sha256``: the state's ``catalog_sha256``, worker/catalog_digest.py).

    The entries are either a list (``_entries``), or a file in our layout (``_base``: its bytes
    and how it is cut) with new entries by index laid over it (``_fresh``; indices past the
    file's entries are products appended after them). An image read from a file is parsed on
    first use: recovery and ``restore`` need only its digest, and must work even when the file
    is not a catalog at all.
    """

    __slots__ = ("_ids", "_entries", "_base", "_fresh", "_position", "sha256", "_unparsed", "_digests")

    def __init__(self, ids: list[str], entries: list[Entry], sha256: str | None) -> None:
        self._ids: list[str] = ids
        self._entries: list[Entry] | None = entries
        self._base: tuple[bytes, Cut] | None = None
        self._fresh: dict[int, bytes] = {}
        self._position: Mapping[str, int] | None = None
        self._unparsed: tuple[bytes, Path | str] | None = None
        self._digests: FileDigests | None = None  # with ``_base``: its entries' digests (``digest``)
        super().__init__()
        self.sha256 = sha256  # the digest of to_bytes() (worker/catalog_digest.py); None: no catalog file yet

    @classmethod
    def empty(cls) -> CatalogImage:
        return cls([], [], None)

    @classmethod
    def _of_file(cls, data: bytes, layout: Cut, sha256: str | None, fresh: dict[int, bytes] | None = None,
                 ids: list[str] | None = None, digests: FileDigests | None = None) -> CatalogImage:
        image = cls(layout.ids if ids is None else ids, [], sha256)
        image._entries, image._base, image._fresh = None, (data, layout), fresh or {}
        image._digests = digests or FileDigests(data, layout.starts)
        return image

    @classmethod
    def from_file_bytes(cls, data: bytes | None, source: Path | str) -> CatalogImage:
        """A catalog file's image, parsed (and shape-checked by ``parse_catalog``) on first use;
        None is an absent catalog."""
        if data is None:
            return cls.empty()
        # Its digest is of the file as it is, whatever its layout; in ours, the entries' digests
        # computed for it are kept for the parse.
        layout = cut(data)
        digests = None if layout is None else FileDigests(data, layout.starts)
        image = cls([], [], digest_of(data) if digests is None else digest_of_list(digests.all()))
        image._unparsed, image._digests = (data, source), digests
        return image

    @classmethod
    def from_own_bytes(cls, data: bytes, sha256: str | None, verify: bool = False) -> CatalogImage | None:
        """The image of a file in the layout our writers write, cut into its entries without parsing
        it (a tenth of the time, and no Python object per field); None when ``data`` does not have
        that layout.

        ``verify``: also check, one product at a time (bounded memory), that each entry is exactly
        what ``entry_bytes`` writes for it, for a file no writer of ours is known to have written.
        """
        layout = cut(data)
        if layout is None:
            return None
        image = cls._of_file(data, layout, sha256)
        if verify and any(entry_bytes(orjson.loads(image.entry(i))) != image.entry(i) for i in range(len(image))):
            return None
        return image if len(image.position) == len(image.ids) else None  # ids unique, as in every catalog

    @classmethod
    def from_own_bytes_like(cls, data: bytes, sha256: str | None, known: CatalogImage) -> CatalogImage | None:
        """``from_own_bytes``, faster when ``data`` is ``known``'s file with a few products changed or
        added (another worker's commit): see ``worker.catalog_layout.cut_like``."""
        if not known.ids:
            return None
        old, old_layout = known._file()
        layout = cut_like(data, old, old_layout, known.position)
        if layout is None:
            return None
        image = cls._of_file(data, layout, sha256)
        return image if len(image.position) == len(image.ids) else None

    @classmethod
    def from_products(cls, products: Iterable[Mapping[str, Any]]) -> CatalogImage:
        image = cls._written(products)
        image.sha256 = image.digest()
        return image

    @classmethod
    def _written(cls, products: Iterable[Mapping[str, Any]]) -> CatalogImage:
        """The image of ``products`` as our writers write them, its digest not computed."""
        ids: list[str] = []
        entries: list[Entry] = []
        for product in products:
            ids.append(product["product_id"])
            entries.append(entry_bytes(product))
        image = cls(ids, entries, None)
        image.parts()  # joined: the image keeps one buffer, not an object per entry
        return image

    def _parse(self) -> None:
        if self._unparsed is not None:
            data, source = self._unparsed
            # Our layout is cut and checked one product at a time: a catalog of 100,000 products
            # never becomes a Python object per field all at once. Any other layout is parsed whole.
            parsed = CatalogImage.from_own_bytes(data, self.sha256, verify=True)
            if parsed is not None and self._digests is not None:
                parsed._digests = self._digests  # the same file, cut the same way
            if parsed is None:  # (its digest stays the file's as it is, not our layout's)
                parsed = CatalogImage._written(parse_catalog(data, source))
            self._ids, self._entries, self._base, self._fresh = parsed._ids, parsed._entries, parsed._base, {}
            self._digests = parsed._digests
            self._unparsed = None

    @property
    def ids(self) -> list[str]:
        self._parse()
        return self._ids

    @property
    def entries(self) -> list[Entry]:
        """Every entry, in order (a new list for an image of a file: prefer ``entry``)."""
        self._parse()
        if self._entries is not None:
            return self._entries
        return [self.entry(index) for index in range(len(self._ids))]

    def entry(self, index: int) -> Entry:
        self._parse()
        if self._entries is not None:
            return self._entries[index]
        fresh = self._fresh.get(index)
        if fresh is not None:
            return fresh
        assert self._base is not None
        data, layout = self._base
        return memoryview(data)[layout.starts[index]:entry_end(data, layout.starts, index)]

    @property
    def position(self) -> Mapping[str, int]:
        if self._position is None:
            self._position = {product_id: index for index, product_id in enumerate(self.ids)}
        return self._position

    def __len__(self) -> int:
        return len(self.ids)

    def product(self, product_id: str) -> dict[str, Any]:
        """The stored product, decoded now: only products a batch touches are ever decoded."""
        decoded: dict[str, Any] = orjson.loads(self.entry(self.position[product_id]))
        return decoded

    def products(self) -> list[dict[str, Any]]:
        return [orjson.loads(self.entry(index)) for index in range(len(self))]

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

    def with_changes(self, changed: Mapping[str, Mapping[str, Any]], order: Sequence[str] | None,
                     appended: Sequence[str] = ()) -> CatalogImage:
        """A new image: ``changed`` products re-serialized, in ``order`` when given (every id, once),
        else in place with ``appended`` (created, among ``changed``) after them all.

        Its ``sha256`` (digest) is left None until the image is written (``sealed_as``).
        """
        fresh = {product_id: entry_bytes(product) for product_id, product in changed.items()}
        ids, position = self.ids, self.position
        if order is not None and not (len(order) >= len(ids) and order[:len(ids)] == ids):
            if self._base is not None:
                # Up to half the file is laid anew rather than every entry and the index rebuilt:
                # a batch that comes late in a burst (4 workers, 64 threads each) places its new
                # products before the hundreds later batches created, and a rebuild per such
                # batch was 4-5 ms at 10,000 products, the most of a group's merge.
                kept = kept_prefix(ids, order, position, max(self._overlay_limit(), len(ids) // 2))
                if kept is not None:
                    return self._relaid_after(kept, fresh, order)
            entries = self.entries
            return CatalogImage(list(order), [fresh[p] if p in fresh else entries[position[p]] for p in order], None)
        # The same products in the same places, perhaps new ones after them (the usual change):
        # the index is extended, not rebuilt, and the entries stay where they are.
        if order is not None:
            appended = order[len(ids):]
        if appended:
            position = extended(position, appended, len(ids))
        new_entries = {position[product_id]: entry for product_id, entry in fresh.items()}
        new_ids = [*ids, *appended] if appended else ids
        if self._base is not None:
            image = CatalogImage._of_file(*self._base, None, {**self._fresh, **new_entries}, new_ids, self._digests)
        else:
            entries = [*self.entries, *(fresh[product_id] for product_id in appended)]
            for index, entry in new_entries.items():
                entries[index] = entry
            image = CatalogImage(new_ids, entries, None)
        image._position = position
        image._derived = self._derive(new_entries)
        return image

    def _relaid_after(self, kept: int, fresh: Mapping[str, bytes], order: Sequence[str]) -> CatalogImage:
        """``with_changes`` when ``order`` keeps this image's first ``kept`` ids and lays the rest
        anew (placement by sequence puts a batch's new products before those of later batches,
        near the end): the entries from ``kept`` on become new entries over the same file, so
        the change costs what moved, not a list of every entry and a new index."""
        assert self._base is not None
        position = self.position
        laid = dict(self._fresh)  # those from ``kept`` on are laid anew below
        laid.update((position[product_id], entry) for product_id, entry in fresh.items()
                    if product_id in position and position[product_id] < kept)
        new_position = as_dict(position)
        for index in range(kept, len(order)):
            product_id = order[index]
            entry = fresh.get(product_id)
            laid[index] = entry if entry is not None else bytes(self.entry(position[product_id]))
            new_position[product_id] = index
        image = CatalogImage._of_file(*self._base, None, laid, list(order), self._digests)
        image._position = new_position
        return image

    def sealed_as(self, sha256: str | None) -> CatalogImage:
        """This image, once written: the digest of its bytes, as the commit recorded it. Its new
        entries stay laid over the file they replace, as written (no copy of the whole file per
        commit), until they are many (``parts`` joins them then)."""
        self.sha256 = sha256
        return self
