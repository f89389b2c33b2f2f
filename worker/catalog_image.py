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

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from worker.catalog_digest import FileDigests, digest_of, digest_of_list
from worker.catalog_file import parse_catalog
from worker.catalog_image_digest import Entry
from worker.catalog_image_parts import FileParts
from worker.catalog_index import as_dict, extended
from worker.catalog_layout import Cut, cut, cut_like, entry_bytes, entry_end, kept_prefix

class CatalogImage(FileParts):
    """An immutable catalog: ``ids`` in file order, each one's serialized entry, and their digest
    (``sha256``: the state's ``catalog_sha256``, worker/catalog_digest.py).

    The entries are either a list (``_entries``), or a file in our layout (``_base``: its bytes
    and how it is cut) with new entries by index laid over it (``_fresh``; indices past the
    file's entries are products appended after them). An image read from a file is parsed on
    first use: recovery and ``restore`` need only its digest, and must work even when the file
    is not a catalog at all.
    """

    __slots__ = ("_ids", "_position", "sha256", "_unparsed")  # the entries' own: FileParts

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
