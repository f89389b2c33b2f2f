"""Merge-upsert of a batch into the catalog, in memory. Pure: no I/O, no Redis, no Celery.

Semantics (those of the system being replaced):
- records apply in order; a later record for the same id patches the earlier result;
- a record for an existing product is a patch: its top-level keys replace the stored ones,
  and the merged product must validate;
- a record for a new product must be a complete product; new products are appended in
  batch order, existing ones keep their position;
- all or nothing: any invalid record rejects the whole batch, and every invalid record is
  reported, not just the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas import Product, RecordError
from schemas.validation import check_record, record_errors

@dataclass
class MergeOutcome:
    """The catalog a batch would produce, with per-product counts, or the reasons it cannot."""

    products: list[dict[str, Any]]
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RecordError] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return not self.errors and (self.created + self.updated) > 0


def merge_batch(catalog: Sequence[dict[str, Any]], records: Sequence[Any]) -> MergeOutcome:
    """Apply ``records`` to ``catalog`` in memory and return the outcome; ``catalog`` is not modified."""
    position = {product["product_id"]: i for i, product in enumerate(catalog)}
    merged: dict[str, dict[str, Any]] = {}
    errors: list[RecordError] = []

    for index, record in enumerate(records):
        shape_errors = check_record(record, index)
        if shape_errors:
            errors.extend(shape_errors)
            continue
        product_id = record["product_id"]
        base = merged.get(product_id)
        if base is None and product_id in position:
            base = catalog[position[product_id]]
        candidate = dict(record) if base is None else {**base, **record}
        try:
            product = Product.model_validate(candidate)
        except ValidationError as exc:
            errors.extend(record_errors(exc, index, product_id, is_new=base is None))
            continue
        merged[product_id] = product.to_record()

    if errors:
        return MergeOutcome(products=list(catalog), errors=errors)

    outcome = MergeOutcome(products=list(catalog))
    for product_id, product in merged.items():
        if product_id not in position:
            outcome.products.append(product)
            outcome.created += 1
        elif _same_product(product, catalog[position[product_id]]):
            outcome.unchanged += 1
        else:
            outcome.products[position[product_id]] = product
            outcome.updated += 1
    return outcome


def _same_product(merged: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Equal data, even when the stored product lacks fields that only hold their defaults."""
    if merged == stored:
        return True
    try:
        return Product.model_validate(stored).to_record() == merged
    except ValidationError:
        return False
