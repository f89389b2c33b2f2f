"""Merge-upsert of a batch into the catalog, in memory. Pure: no I/O, no Redis, no Celery.

Semantics (those of the system being replaced):
- records apply in order; a later record for the same id patches the earlier result;
- a record for an existing product is a patch: its top-level keys replace the stored ones,
  and the merged product must validate;
- a record for a new product must be a complete product; new products are appended in
  batch order, existing ones keep their position;
- all or nothing: any invalid record rejects the whole batch, and every invalid record is
  reported, not just the first.

Order safety: given the batch's ``sequence`` and the sequence that last wrote each field
(``versions``), a field last written by a higher sequence is skipped and reported as
superseded, and the batch's other fields still apply. A patch of a product that only a later
sequence created did not exist at its own sequence: it is an error, as in sequence order (and
retried while lower batches, which may create the product, are pending). New products are placed by the sequence that created them
(kept under the ``product_id`` key of their versions), so their position in the array does
not depend on processing order either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas import Product, RecordError, SupersededField
from schemas.validation import NEW_PRODUCT_HINT, check_record, record_errors

Versions = Mapping[str, Mapping[str, int]]
CREATED = "product_id"  # in a product's versions: the sequence of the batch that created it


@dataclass
class MergeOutcome:
    """The catalog a batch would produce, with per-product counts, or the reasons it cannot."""

    products: list[dict[str, Any]]
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RecordError] = field(default_factory=list)
    superseded: list[SupersededField] = field(default_factory=list)
    versions: dict[str, dict[str, int]] = field(default_factory=dict)
    missing_products: set[str] = field(default_factory=set)
    moved: bool = False  # a product now sits where the batch that really created it puts it

    @property
    def changed(self) -> bool:
        return not self.errors and (self.created + self.updated > 0 or self.moved)


def _newer_fields(
    record: dict[str, Any], index: int, sequence: int, written: Mapping[str, int], superseded: list[SupersededField]
) -> dict[str, Any]:
    kept = {}
    for name, value in record.items():
        by = written.get(name, 0)
        if name != "product_id" and by > sequence:
            superseded.append(SupersededField(index=index, product_id=record["product_id"], field=name, by_sequence=by))
        else:
            kept[name] = value
    return kept


def merge_batch(
    catalog: Sequence[dict[str, Any]],
    records: Sequence[Any],
    sequence: int | None = None,
    versions: Versions | None = None,
) -> MergeOutcome:
    """Apply ``records`` to ``catalog`` in memory and return the outcome; nothing given is modified.

    Without ``sequence`` every field is written (plain, in-order semantics). With it, the
    outcome's ``versions`` holds the new field versions of every product the batch touched.
    """
    position = {product["product_id"]: i for i, product in enumerate(catalog)}
    known_versions: Versions = versions or {}
    merged: dict[str, dict[str, Any]] = {}
    outcome = MergeOutcome(products=list(catalog))

    placed: list[str] = []  # created, or created earlier than we knew, by this batch: in record order
    for index, record in enumerate(records):
        shape_errors = check_record(record, index)
        if shape_errors:
            outcome.errors.extend(shape_errors)
            continue
        product_id = record["product_id"]
        base = merged.get(product_id)
        if base is None and product_id in position:
            base = catalog[position[product_id]]
        if (sequence is not None and base is not None and product_id not in merged
                and known_versions.get(product_id, {}).get(CREATED, 0) > sequence and not _complete(record)):
            # In sequence order this product did not exist yet: a later batch created it. A
            # patch of it is what sequence order would reject (or, while a lower batch that may
            # create it is pending, retry), never a write of the fields its creator left out.
            outcome.missing_products.add(product_id)
            outcome.errors.append(RecordError(index=index, product_id=product_id, loc="", msg=(
                f"no product with this product_id existed at this batch's sequence (sequence "
                f"{known_versions[product_id][CREATED]} created it later); {NEW_PRODUCT_HINT}")))
            continue
        fields = dict(record)
        if sequence is not None and base is not None:
            written = outcome.versions.get(product_id) or known_versions.get(product_id, {})
            fields = _newer_fields(record, index, sequence, written, outcome.superseded)
        candidate = fields if base is None else {**base, **fields}
        try:
            product = Product.model_validate(candidate)
        except ValidationError as exc:
            if base is None:
                outcome.missing_products.add(product_id)
            outcome.errors.extend(record_errors(exc, index, product_id, is_new=base is None))
            continue
        merged[product_id] = product.to_record()
        if sequence is not None:
            written = outcome.versions.get(product_id) or dict(known_versions.get(product_id, {}))
            updated = {**written, **{name: sequence for name in fields if name != CREATED}}
            if base is None or _creates_earlier(record, sequence, written):
                updated[CREATED] = sequence
                if product_id not in placed:
                    placed.append(product_id)
            outcome.versions[product_id] = updated

    if outcome.errors:
        outcome.products = list(catalog)
        outcome.versions = {}
        return outcome

    for product_id, product in merged.items():
        if product_id not in position:
            if sequence is None:
                outcome.products.append(product)
            outcome.created += 1
        elif _same_product(product, catalog[position[product_id]]):
            outcome.unchanged += 1
        else:
            outcome.products[position[product_id]] = product
            outcome.updated += 1
    if sequence is not None and placed:
        outcome.products = _place(outcome.products, [merged[p] for p in placed], sequence, known_versions)
        outcome.moved = _order(catalog) != _order(outcome.products[: len(catalog)])
    return outcome


def _complete(record: dict[str, Any]) -> bool:
    """Whether the record alone is a valid product, i.e. could create one."""
    try:
        Product.model_validate(record)
    except ValidationError:
        return False
    return True


def _creates_earlier(record: dict[str, Any], sequence: int, written: Mapping[str, int]) -> bool:
    """A complete record for a product a later batch created: in sequence order, this one created it."""
    return written.get(CREATED, 0) > sequence and _complete(record)


def _place(products: list[dict[str, Any]], placed: list[dict[str, Any]], sequence: int,
           versions: Versions) -> list[dict[str, Any]]:
    """Insert ``placed`` as a block before the first product created by a higher sequence."""
    ids = {p["product_id"] for p in placed}
    rest = [p for p in products if p["product_id"] not in ids]
    at = len(rest)
    while at > 0 and versions.get(rest[at - 1]["product_id"], {}).get(CREATED, 0) > sequence:
        at -= 1
    return rest[:at] + placed + rest[at:]


def _order(products: Sequence[dict[str, Any]]) -> list[str]:
    return [p["product_id"] for p in products]


def _same_product(merged: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Equal data, even when the stored product lacks fields that only hold their defaults."""
    if merged == stored:
        return True
    try:
        return Product.model_validate(stored).to_record() == merged
    except ValidationError:
        return False
