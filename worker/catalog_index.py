"""An image's index (product id to position), extended by the products a batch appends without
copying it whole. Pure: no I/O.

Why: every batch that creates products makes a new image, and copying the index of a catalog of
100,000 products took 3-5 ms a batch (0.3-0.5 ms at 10,000), for the few products it appends. An
extended index keeps the index it extends and a small dict of the appended products; past an
eighth of the base it is joined into one dict again, so a lookup stays two dict lookups and the
copies add up to a few per product appended.

The base is shared by every index extended from it and is never changed: an image is never
changed in place (worker/catalog_image.py), and a write that starts over still has the image,
and the index, it started from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

# The appended products are joined into the base once they are more than an eighth of it.
JOIN_AT = 8


class AppendedIndex(Mapping[str, int]):
    """``base`` with ``extra`` (products appended after every one of ``base``) laid over it."""

    __slots__ = ("_base", "_extra")

    def __init__(self, base: dict[str, int], extra: dict[str, int]) -> None:
        self._base, self._extra = base, extra

    def __getitem__(self, product_id: str) -> int:
        found = self._extra.get(product_id)
        return self._base[product_id] if found is None else found

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._extra or product_id in self._base

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        yield from self._extra

    def __len__(self) -> int:
        return len(self._base) + len(self._extra)


def extended(index: Mapping[str, int], appended: Sequence[str], start: int) -> Mapping[str, int]:
    """``index`` with ``appended`` (none of them in it) at positions ``start``, ``start + 1``, ..."""
    new = {product_id: start + offset for offset, product_id in enumerate(appended)}
    if isinstance(index, AppendedIndex):
        base, extra = index._base, {**index._extra, **new}
    elif isinstance(index, dict):
        base, extra = index, new
    else:
        base, extra = dict(index), new
    if len(extra) * JOIN_AT > len(base):
        return {**base, **extra}
    return AppendedIndex(base, extra)


def as_dict(index: Mapping[str, int]) -> dict[str, int]:
    """A dict of its own of ``index`` (to change), copied at C speed."""
    if isinstance(index, AppendedIndex):
        return {**index._base, **index._extra}
    return dict(index)
