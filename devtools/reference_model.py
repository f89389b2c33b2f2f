"""A deliberately simple model of the catalog, written apart from worker/merge.py.

It states the merge rule of the README and nothing more: batches are applied one by one in
sequence order, records in batch order; a record for a product already there replaces the
top-level keys it names; a record for a new product must be a complete, valid product and is
appended; any invalid record rejects the whole batch. Validity is the schema's (``Product``),
the only piece shared with the code under test; no version, position or superseding logic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from schemas import Product

Record = dict[str, Any]


def _valid(candidate: Any) -> Record | None:
    """The product as stored (the schema's normal form), or None when it is not a valid product."""
    if not isinstance(candidate, dict) or not isinstance(candidate.get("product_id"), str):
        return None
    try:
        return Product.model_validate(candidate).to_record()
    except ValidationError:
        return None


def apply_batch(catalog: Sequence[Record], records: Iterable[Any]) -> list[Record] | None:
    """The catalog after one batch, or None when the batch is rejected (then nothing changes)."""
    products: dict[str, Record] = {p["product_id"]: p for p in catalog}
    order = [p["product_id"] for p in catalog]
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("product_id"), str):
            return None
        product_id = record["product_id"]
        stored = products.get(product_id)
        merged = _valid(record if stored is None else {**stored, **record})
        if merged is None:
            return None
        if stored is None:
            order.append(product_id)
        products[product_id] = merged
    return [products[product_id] for product_id in order]


def apply_in_sequence_order(catalog: Sequence[Record], batches: Sequence[Sequence[Any]]) -> list[Record]:
    """``batches[i]`` has sequence i + 1; each is applied or rejected whole, in that order."""
    current = list(catalog)
    for records in batches:
        after = apply_batch(current, records)
        if after is not None:
            current = after
    return current
