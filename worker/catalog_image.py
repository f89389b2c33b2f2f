"""The catalog as a writer keeps it between batches: product ids in order and each product's bytes.

Why bytes and not dicts: a parsed product is a Python object per field, about ten times the
file's size in memory; its serialized bytes are exactly its share of the file. A batch decodes
only the products it touches (``product``), and writing the file re-serializes only those: the
file is the join of every product's bytes (``to_bytes``), byte for byte what
``worker.catalog_file.serialize_catalog`` writes for the same products (a property test checks
it over random catalogs and patches).

An image is never changed in place: ``with_changes`` returns a new one sharing the untouched
bytes, so a write that starts over still has the image it started from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from worker.catalog_file import parse_catalog

_INDENT = b"  "
_TOP_LEVEL_ID = b'\n    "product_id": "'
_BETWEEN_PRODUCTS = b"\n  },\n  {\n"


def entry_bytes(product: Mapping[str, Any]) -> bytes:
    """One product as it appears inside the catalog's array: indented one level, no separator."""
    return _INDENT + orjson.dumps(product, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n" + _INDENT)


def join_entries(entries: Sequence[bytes]) -> bytes:
    """The catalog file from its products' entries (orjson's layout for a list: ``[]`` when empty)."""
    if not entries:
        return b"[]\n"
    if len(entries) == 1:
        return b"[\n" + entries[0] + b"\n]\n"
    # One copy of the whole file: the brackets ride on the first and last entries (which may be
    # views of the file they were cut from: bytes() makes them bytes to add to).
    return b",\n".join([b"[\n" + entries[0], *entries[1:-1], bytes(entries[-1]) + b"\n]\n"])


class CatalogImage:
    """An immutable catalog: ``ids`` in file order, ``entries`` their serialized bytes, and their sha256.

    An image read from a file is parsed on first use: recovery and ``restore`` need only its
    sha256, and must work even when the file is not a catalog at all.
    """

    __slots__ = ("_ids", "_entries", "_position", "sha256", "_unparsed")

    def __init__(self, ids: list[str], entries: list[bytes], sha256: str | None) -> None:
        self._ids, self._entries = ids, entries
        self._position: dict[str, int] | None = None
        self._unparsed: tuple[bytes, Path | str] | None = None
        self.sha256 = sha256  # of to_bytes(); None for "no catalog file yet"

    @classmethod
    def empty(cls) -> CatalogImage:
        return cls([], [], None)

    @classmethod
    def from_file_bytes(cls, data: bytes | None, source: Path | str) -> CatalogImage:
        """A catalog file's image, parsed (and shape-checked by ``parse_catalog``) on first use;
        None is an absent catalog."""
        if data is None:
            return cls.empty()
        image = cls([], [], hashlib.sha256(data).hexdigest())  # of the file as it is, whatever its layout
        image._unparsed = (data, source)
        return image

    @classmethod
    def from_own_bytes(cls, data: bytes, sha256: str | None, verify: bool = False) -> CatalogImage | None:
        """The image of a file in the layout our writers write (``join_entries`` of ``entry_bytes``),
        cut into its entries without parsing the file; None when ``data`` does not have that layout.

        Why the cut is exact: in that layout a product opens with ``  {`` and closes with ``  }``
        on lines of their own, deeper levels are indented further, and a string holds no raw
        newline, so ``\n  },\n  {\n`` occurs only between two products, and ``\n    "product_id": "``
        only at a product's top level. The entries are views of ``data`` (no copy). It spares the
        parse of the whole file when another writer committed (a tenth of the time, and no
        Python object per field).

        ``verify``: also check, one product at a time (bounded memory), that each entry is exactly
        what ``entry_bytes`` writes for it, for a file no writer of ours is known to have written.
        """
        if data == b"[]\n":
            return cls([], [], sha256)
        if not (data.startswith(b"[\n  {\n") and data.endswith(b"\n  }\n]\n")):
            return None
        view = memoryview(data)
        starts, ends = [2], []
        at = data.find(_BETWEEN_PRODUCTS)  # bytes.find, not a regex: a fast scan for a long literal
        while at != -1:
            ends.append(at + 4)  # keeps "\n  }"
            starts.append(at + len(_BETWEEN_PRODUCTS) - 4)  # from "  {\n"
            at = data.find(_BETWEEN_PRODUCTS, at + 1)
        ends.append(len(data) - 3)
        if data.count(_TOP_LEVEL_ID) != len(starts):
            return None  # then some product has none, or two, at its top level
        quoted = []
        for start, end in zip(starts, ends, strict=True):
            at = data.find(_TOP_LEVEL_ID, start, end)
            if at == -1:
                return None
            value_start = at + len(_TOP_LEVEL_ID) - 1  # the opening quote
            quoted.append(data[value_start:data.find(b"\n", value_start, end)].rstrip(b","))
        try:
            ids = orjson.loads(b"[" + b",".join(quoted) + b"]")  # one parse for every id
        except orjson.JSONDecodeError:
            return None
        if not all(isinstance(product_id, str) for product_id in ids):
            return None
        entries: list[bytes] = [view[start:end] for start, end in zip(starts, ends, strict=True)]  # type: ignore[misc]
        if verify and any(entry_bytes(orjson.loads(entry)) != entry for entry in entries):
            return None
        image = cls(ids, entries, sha256)
        return image if len(image.position) == len(ids) else None  # ids unique, as in every catalog

    @classmethod
    def from_own_bytes_like(cls, data: bytes, sha256: str | None, known: CatalogImage) -> CatalogImage | None:
        """``from_own_bytes``, faster when ``data`` is ``known`` with a few products changed or added
        (another worker's commit): each known entry found unchanged at its place is taken as it is
        (a memcmp), and only the others are cut and read. None where the file departs from
        ``known`` otherwise (products moved or gone): then cut it whole.
        """
        if not (data.startswith(b"[\n  {\n") and data.endswith(b"\n  }\n]\n")) or not known.ids:
            return None
        view, known_ids, known_entries = memoryview(data), known.ids, known.entries
        ids: list[str] = []
        entries: list[bytes] = []
        position, at, last = 0, 2, len(data) - 3
        while at < last:
            if position < len(known_ids):
                entry = known_entries[position]
                end = at + len(entry)
                if data.startswith(entry, at) and data.startswith(b",\n" if end < last else b"\n]", end):
                    ids.append(known_ids[position])
                    entries.append(view[at:end])  # type: ignore[arg-type]
                    position, at = position + 1, end + 2
                    continue
            boundary = data.find(_BETWEEN_PRODUCTS, at)
            end = last if boundary == -1 else boundary + 4
            found = data.find(_TOP_LEVEL_ID, at, end)
            if found == -1:
                return None
            value_start = found + len(_TOP_LEVEL_ID) - 1
            product_id = orjson.loads(data[value_start:data.find(b"\n", value_start, end)].rstrip(b","))
            if position < len(known_ids) and product_id == known_ids[position]:
                position += 1  # changed in place
            elif product_id in known.position:
                return None  # moved: not the shape this is for
            ids.append(product_id)
            entries.append(view[at:end])  # type: ignore[arg-type]
            at = end + 2
        if position != len(known_ids) or data.count(_TOP_LEVEL_ID) != len(ids):
            return None  # a known product is gone; or an entry holds a second top-level id
        image = cls(ids, entries, sha256)
        return image if len(image.position) == len(ids) else None

    @classmethod
    def from_products(cls, products: Iterable[Mapping[str, Any]]) -> CatalogImage:
        ids, entries = [], []
        for product in products:
            ids.append(product["product_id"])
            entries.append(entry_bytes(product))
        image = cls(ids, entries, None)
        image.sha256 = hashlib.sha256(image.to_bytes()).hexdigest()
        return image

    def _parse(self) -> None:
        if self._unparsed is not None:
            data, source = self._unparsed
            # Our layout is cut and checked one product at a time: a catalog of 100,000 products
            # never becomes a Python object per field all at once. Any other layout is parsed whole.
            parsed = CatalogImage.from_own_bytes(data, self.sha256, verify=True)
            if parsed is None:
                parsed = CatalogImage.from_products(parse_catalog(data, source))
            self._ids, self._entries, self._unparsed = parsed._ids, parsed._entries, None

    @property
    def ids(self) -> list[str]:
        self._parse()
        return self._ids

    @property
    def entries(self) -> list[bytes]:
        self._parse()
        return self._entries

    @property
    def position(self) -> dict[str, int]:
        if self._position is None:
            self._position = {product_id: index for index, product_id in enumerate(self.ids)}
        return self._position

    def __len__(self) -> int:
        return len(self.ids)

    def product(self, product_id: str) -> dict[str, Any]:
        """The stored product, decoded now: only products a batch touches are ever decoded."""
        decoded: dict[str, Any] = orjson.loads(self.entries[self.position[product_id]])
        return decoded

    def products(self) -> list[dict[str, Any]]:
        return [orjson.loads(entry) for entry in self.entries]

    def to_bytes(self) -> bytes:
        return join_entries(self.entries)

    def with_changes(self, changed: Mapping[str, Mapping[str, Any]], order: Sequence[str] | None) -> CatalogImage:
        """A new image: ``changed`` products re-serialized, in ``order`` when given (every id, once).

        Its ``sha256`` is left None until the image is written (``sealed_as``).
        """
        fresh = {product_id: entry_bytes(product) for product_id, product in changed.items()}
        if order is None:
            entries = list(self.entries)
            position = self.position
            for product_id, entry in fresh.items():
                entries[position[product_id]] = entry
            image = CatalogImage(self.ids, entries, None)
            image._position = position  # same ids, same places
            return image
        position = self.position
        entries = [fresh[p] if p in fresh else self.entries[position[p]] for p in order]
        return CatalogImage(list(order), entries, None)

    def sealed_as(self, sha256: str | None) -> CatalogImage:
        """This image, once written: the sha256 of its bytes, as the commit computed it."""
        self.sha256 = sha256
        return self
