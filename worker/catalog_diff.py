"""What a batch would change in the catalog, or what differs between two versions of it. Pure: no I/O.

Behind ``catalog apply --dry-run``, ``catalog diff FILE`` and ``catalog diff BACKUP [BACKUP]``.
A batch is previewed by the merge itself (``worker.merge.merge_batch``, plain in-order
semantics): a new batch takes a sequence above every earlier one, so no field of it would be
superseded, and the preview is exactly what applying it now would do. Changes have the shape
the change stream, history and revert use (``worker.changes``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas import RecordError
from worker.changes import FieldChange, ProductChange, field_changes, product_change
from worker.merge import merge_batch

# How deep the terminal rendering looks inside a changed value (pricing[0].price_aed is 2 levels).
# A value nested deeper (only an unvalidated backup can hold one) is shown whole.
MAX_DETAIL_DEPTH = 4


@dataclass(frozen=True)
class CatalogDiff:
    """The difference between a catalog and its next version.

    ``products`` holds each product created or changed, in the next version's order;
    ``removed`` each product only the first version has (with all its fields as ``new_absent``),
    in its order. For a batch, ``errors`` non-empty means it would be rejected and nothing would
    change: ``products`` is then empty and ``unchanged`` 0.
    """

    products: list[ProductChange] = field(default_factory=list)
    removed: list[ProductChange] = field(default_factory=list)
    unchanged: int = 0
    errors: list[RecordError] = field(default_factory=list)
    order_changed: bool = False  # the products both versions have are in another order

    @property
    def created(self) -> int:
        return sum(1 for change in self.products if change.created)

    @property
    def changed(self) -> int:
        return sum(1 for change in self.products if not change.created)

    @property
    def rejected(self) -> bool:
        return bool(self.errors)

    @property
    def differs(self) -> bool:
        return bool(self.products or self.removed or self.order_changed)


@dataclass(frozen=True)
class BatchPreview:
    """What a batch would change, and the catalog it would leave (the same catalog if rejected)."""

    diff: CatalogDiff
    products_after: list[dict[str, Any]]


def preview_batch(catalog: Sequence[dict[str, Any]], records: Sequence[Any]) -> BatchPreview:
    """What applying ``records`` to ``catalog`` would change, computed by the merge that applies them."""
    outcome = merge_batch(catalog, records)
    if outcome.errors:
        return BatchPreview(CatalogDiff(errors=list(outcome.errors)), list(catalog))
    before = {product["product_id"]: product for product in catalog}
    changes = []
    for product in outcome.products:
        product_id = product["product_id"]
        if product_id in outcome.changed_products:
            change = product_change(before.get(product_id), product)
            if change is not None:
                changes.append(change)
    return BatchPreview(CatalogDiff(products=changes, unchanged=outcome.unchanged), outcome.products)


def diff_catalogs(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> CatalogDiff:
    """What differs from ``before`` to ``after``, two catalogs whose product ids are unique."""
    old = {product["product_id"]: product for product in before}
    new_ids = {product["product_id"] for product in after}
    changes, unchanged = [], 0
    for product in after:
        change = product_change(old.get(product["product_id"]), product)
        if change is None:
            unchanged += 1
        else:
            changes.append(change)
    removed = [ProductChange(product_id=str(product["product_id"]), fields=field_changes(product, {}))
               for product in before if product["product_id"] not in new_ids]
    kept_before = [product["product_id"] for product in before if product["product_id"] in new_ids]
    kept_after = [product["product_id"] for product in after if product["product_id"] in old]
    return CatalogDiff(products=changes, removed=removed, unchanged=unchanged, order_changed=kept_before != kept_after)


class Absent:
    """The value of a field or item that is not there (distinct from JSON null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent()


@dataclass(frozen=True)
class ValueChange:
    """One changed value inside a field, by its path (``pricing[0].price_aed``): for a person to read."""

    path: str
    old: Any
    new: Any


def value_changes(change: FieldChange) -> list[ValueChange]:
    """The field's change as the smallest differing values: into objects by key and into lists by
    index, so a price feed reads ``pricing[0].price_aed: 149.0 -> 159.0`` instead of two whole
    pricing lists. An item only one side has shows ``ABSENT`` on the other (by index: an item
    inserted at the front shows every later index as changed, which is still true).
    """
    old = ABSENT if change.old_absent else change.old
    new = ABSENT if change.new_absent else change.new
    return list(_walk(change.field, old, new, 0))


def _walk(path: str, old: Any, new: Any, depth: int) -> Iterator[ValueChange]:
    if depth < MAX_DETAIL_DEPTH and isinstance(old, dict) and isinstance(new, dict):
        keys = [*new, *(key for key in old if key not in new)]
        for key in keys:
            before, after = old.get(key, ABSENT), new.get(key, ABSENT)
            if before != after:
                yield from _walk(f"{path}.{key}", before, after, depth + 1)
    elif depth < MAX_DETAIL_DEPTH and isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            before = old[index] if index < len(old) else ABSENT
            after = new[index] if index < len(new) else ABSENT
            if before != after:
                yield from _walk(f"{path}[{index}]", before, after, depth + 1)
    else:
        yield ValueChange(path, old, new)
