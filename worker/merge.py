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

from schemas import Product, ProductPatch, RecordError, format_loc

NEW_PRODUCT_HINT = "required for a new product (no product with this product_id is in the catalog yet)"


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


def _record_errors(exc: ValidationError, index: int, product_id: str | None, is_new: bool) -> list[RecordError]:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = format_loc(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{loc}' (not part of a product; check the spelling)"
        elif err["type"] == "missing" and is_new and len(err["loc"]) == 1:
            msg = f"field required: {NEW_PRODUCT_HINT}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        errors.append(RecordError(index=index, product_id=product_id, loc=loc, msg=msg))
    return errors


def _readable_id(record: Any) -> str | None:
    if isinstance(record, dict) and isinstance(record.get("product_id"), str):
        return record["product_id"]
    return None


def check_record(record: Any, index: int) -> list[RecordError]:
    """Errors that can be found in one record without the catalog (types, unknown fields)."""
    product_id = _readable_id(record)
    if not isinstance(record, dict):
        return [RecordError(index=index, msg=f"a record must be a JSON object, not {type(record).__name__}")]
    try:
        ProductPatch.model_validate(record)
    except ValidationError as exc:
        return _record_errors(exc, index, product_id, is_new=False)
    return []


def merge_batch(catalog: Sequence[dict[str, Any]], records: Sequence[Any]) -> MergeOutcome:
    """Apply ``records`` to ``catalog`` in memory and return the outcome; ``catalog`` is not modified."""
    position = {product["product_id"]: i for i, product in enumerate(catalog)}
    merged: dict[str, dict[str, Any]] = {}
    errors: list[RecordError] = []

    for index, record in enumerate(records):
        record_errors = check_record(record, index)
        if record_errors:
            errors.extend(record_errors)
            continue
        product_id = record["product_id"]
        base = merged.get(product_id)
        if base is None and product_id in position:
            base = catalog[position[product_id]]
        candidate = dict(record) if base is None else {**base, **record}
        try:
            product = Product.model_validate(candidate)
        except ValidationError as exc:
            errors.extend(_record_errors(exc, index, product_id, is_new=base is None))
            continue
        merged[product_id] = product.to_record()

    if errors:
        return MergeOutcome(products=list(catalog), errors=errors)

    outcome = MergeOutcome(products=list(catalog))
    for product_id, product in merged.items():
        if product_id not in position:
            outcome.products.append(product)
            outcome.created += 1
        elif product != catalog[position[product_id]]:
            outcome.products[position[product_id]] = product
            outcome.updated += 1
        else:
            outcome.unchanged += 1
    return outcome
