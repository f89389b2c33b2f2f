"""Our catalog file's layout, as bytes: a product's entry, the file from its entries, the cut
of a file back into entries without parsing it, and how much of a file a new order keeps.

The layout is orjson's ``OPT_INDENT_2`` dump of the list (``worker.catalog_file.serialize_catalog``):
``[\\n``, the entries joined by ``,\\n``, ``\\n]\\n``; ``[]\\n`` when empty. An entry is one product,
indented one level, without its separator.

Why a cut is exact: in that layout a product opens with ``  {`` and closes with ``  }`` on lines
of their own, deeper levels are indented further, and a string holds no raw newline, so
``\\n  },\\n  {\\n`` occurs only between two products, and ``\\n    "product_id": "`` only at a
product's top level. A cut returns the product ids and where each entry starts; an entry ends 2
bytes before the next one starts (its ``,\\n``), the last one 3 bytes before the file ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson

_INDENT = b"  "
_TOP_LEVEL_ID = b'\n    "product_id": "'
_BETWEEN_PRODUCTS = b"\n  },\n  {\n"
EMPTY = b"[]\n"


class Cut(NamedTuple):
    """A file in our layout: its product ids in order, and the offset where each entry starts."""

    ids: list[str]
    starts: list[int]


def entry_bytes(product: Mapping[str, Any]) -> bytes:
    """One product as it appears inside the catalog's array: indented one level, no separator."""
    return _INDENT + orjson.dumps(product, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n" + _INDENT)


def file_parts(entries: Sequence[bytes | memoryview]) -> list[bytes | memoryview]:
    """The catalog file from its entries, or from runs of entries already joined, as the buffers
    to write one after the other (no copy)."""
    if not entries:
        return [EMPTY]
    parts: list[bytes | memoryview] = [b",\n"] * (2 * len(entries) + 1)
    parts[0], parts[1::2], parts[-1] = b"[\n", entries, b"\n]\n"
    return parts


def entry_end(data: bytes, starts: Sequence[int], index: int) -> int:
    """Where entry ``index`` of a file cut at ``starts`` ends (its closing ``  }`` included)."""
    return starts[index + 1] - 2 if index + 1 < len(starts) else len(data) - 3


def _is_own_file(data: bytes) -> bool:
    return data.startswith(b"[\n  {\n") and data.endswith(b"\n  }\n]\n")


def cut(data: bytes) -> Cut | None:
    """``data`` cut into its entries; None when it is not in our layout (or an id is not a string)."""
    if data == EMPTY:
        return Cut([], [])
    if not _is_own_file(data):
        return None
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
    return Cut(ids, starts)


def cut_like(data: bytes, known: bytes, known_cut: Cut, known_position: Mapping[str, int]) -> Cut | None:
    """``cut(data)``, fast when ``data`` is the file ``known`` with a few entries changed or added
    (another worker's commit); None when it departs from ``known`` otherwise (an entry moved or
    gone): then cut it whole.

    Runs of known entries found unchanged (shifted by the entries that changed before them) are
    taken as they are: compared a block at a time, blocks doubling, then halving to the first
    difference, each byte about once, with a few compares per change instead of one per product.
    Only the other entries are cut and read.
    """
    if not _is_own_file(data) or not known_cut.ids:
        return None
    known_ids, known_starts = known_cut
    count, known_view = len(known_ids), memoryview(known)

    def same(first: int, stop: int, shift: int) -> bool:
        """Known entries ``first`` to ``stop - 1`` (separators between them too) are in ``data``, shifted."""
        block = known_view[known_starts[first]:entry_end(known, known_starts, stop - 1)]
        return data.startswith(block, known_starts[first] + shift)  # a memcmp

    ids: list[str] = []
    starts: list[int] = []
    position, at, last = 0, 2, len(data) - 3
    while at < last:
        matched = position  # known entries before ``matched`` are at their place
        if position < count:
            shift, step = at - known_starts[position], 1
            while matched < count and same(matched, min(matched + step, count), shift):
                matched, step = min(matched + step, count), 2 * step
            if matched < count:  # entries ``matched`` to ``differs - 1`` hold the first difference
                differs = min(matched + step, count)
                while differs - matched > 1:
                    middle = (matched + differs) // 2
                    matched, differs = (middle, differs) if same(matched, middle, shift) else (matched, middle)
        if matched > position:
            end = entry_end(known, known_starts, matched - 1) + shift
            if end != last and data[end:end + 2] != b",\n":
                return None  # an entry's bytes with more after them: not an entry of ours
            ids.extend(known_ids[position:matched])
            starts.extend([start + shift for start in known_starts[position:matched]])
            position, at = matched, end + 2
            continue
        boundary = data.find(_BETWEEN_PRODUCTS, at)
        end = last if boundary == -1 else boundary + 4
        found = data.find(_TOP_LEVEL_ID, at, end)
        if found == -1 or data.count(_TOP_LEVEL_ID, found + 1, end):
            return None  # no top-level id, or a second one
        value_start = found + len(_TOP_LEVEL_ID) - 1
        try:
            product_id = orjson.loads(data[value_start:data.find(b"\n", value_start, end)].rstrip(b","))
        except orjson.JSONDecodeError:
            return None
        if not isinstance(product_id, str):
            return None
        if position < count and product_id == known_ids[position]:
            position += 1  # changed in place
        elif product_id in known_position:
            return None  # moved: not the shape this is for
        ids.append(product_id)
        starts.append(at)
        at = end + 2
    return Cut(ids, starts) if position == count else None  # else a known product is gone


def kept_prefix(ids: list[str], order: Sequence[str], position: Mapping[str, int], limit: int) -> int | None:
    """How many of ``ids`` open ``order`` unchanged (``order`` holds every id once, and new ones),
    found from the end in at most ``limit`` steps; None when more than ``limit`` entries follow them.

    ``order[at:]`` can follow ``ids[:at]`` only if it holds every id from ``at`` on and none before;
    the first ``at`` (from the end) where that holds is the answer when ``order[:at]`` really is
    ``ids[:at]`` (one comparison; otherwise the order moved earlier products too).
    """
    known, lowest = 0, len(ids)
    for at in range(len(order) - 1, max(len(order) - 1 - limit, -1), -1):
        index = position.get(order[at])
        if index is not None:
            known, lowest = known + 1, min(lowest, index)
        if lowest >= at and known == len(ids) - at:
            return at if order[:at] == ids[:at] else None
    return None
