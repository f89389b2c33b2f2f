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

from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import ValidationError

from schemas import Product, RecordError, SupersededField
from schemas.validation import NEW_PRODUCT_HINT, check_record, record_errors

Versions = Mapping[str, Mapping[str, int]]
CREATED = "product_id"  # in a product's versions: the sequence of the batch that created it


class CatalogView(Protocol):
    """What the merge reads of a catalog: its ids in order, and a product by id (decoded on demand)."""

    @property
    def ids(self) -> list[str]: ...

    @property
    def position(self) -> Mapping[str, int]: ...

    def product(self, product_id: str) -> dict[str, Any]: ...


class _ListView:
    """A catalog given as a list of products."""

    def __init__(self, products: Sequence[dict[str, Any]]) -> None:
        self._products = products
        self.ids = [product["product_id"] for product in products]
        self.position = {product_id: index for index, product_id in enumerate(self.ids)}

    def product(self, product_id: str) -> dict[str, Any]:
        return self._products[self.position[product_id]]


@dataclass
class MergeOutcome:
    """The change a batch would make, with per-product counts, or the reasons it cannot.

    ``changed_products`` holds the new value of every product created or updated; ``order`` the new
    order of all ids when products were created elsewhere than after every other, or moved
    (None: the order is unchanged, but for ``appended``, the products created after every other,
    in order: the usual change, which then costs what it appends, not a list of every id).
    ``products`` (the whole new catalog) is only filled by ``merge_batch``.
    """

    products: list[dict[str, Any]] = field(default_factory=list)
    changed_products: dict[str, dict[str, Any]] = field(default_factory=dict)
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)  # updated products as they were
    order: list[str] | None = None
    appended: list[str] = field(default_factory=list)
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
    """Apply ``records`` to ``catalog`` in memory and return the outcome with the whole new
    catalog in ``products``; nothing given is modified.

    Without ``sequence`` every field is written (plain, in-order semantics). With it, the
    outcome's ``versions`` holds the new field versions of every product the batch touched.
    """
    view = _ListView(catalog)
    outcome = merge_into(view, records, sequence, versions)
    if outcome.errors:
        outcome.products = list(catalog)
        return outcome
    order = outcome.order if outcome.order is not None else [*view.ids, *outcome.appended]
    outcome.products = [outcome.changed_products[p] if p in outcome.changed_products else view.product(p) for p in order]
    return outcome


def merge_into(
    catalog: CatalogView,
    records: Sequence[Any],
    sequence: int | None = None,
    versions: Versions | None = None,
) -> MergeOutcome:
    """The merge itself, reading only the products the batch touches: what changes, not a new catalog."""
    position = catalog.position
    known_versions: Versions = versions or {}
    versions_of = _reader(known_versions)
    merged: dict[str, dict[str, Any]] = {}
    stored: dict[str, dict[str, Any]] = {}  # the catalog's products this batch touched, decoded once
    outcome = MergeOutcome()

    placed: list[str] = []  # created, or created earlier than we knew, by this batch: in record order
    for index, record in enumerate(records):
        product_id = record.get("product_id") if isinstance(record, dict) else None
        if not isinstance(product_id, str):
            # Always errors (product_id is required, a string); the fallback never drops a record.
            outcome.errors.extend(check_record(record, index) or [
                RecordError(index=index, loc="product_id", msg="product_id must be a string")])
            continue
        base = merged.get(product_id)
        if base is None and product_id in position:
            if product_id not in stored:
                stored[product_id] = catalog.product(product_id)
            base = stored[product_id]
        if (sequence is not None and base is not None and product_id not in merged
                and versions_of(product_id).get(CREATED, 0) > sequence and not _complete(record)):
            # In sequence order this product did not exist yet: a later batch created it. A
            # patch of it is what sequence order would reject (or, while a lower batch that may
            # create it is pending, retry), never a write of the fields its creator left out.
            shape_errors = check_record(record, index)
            if shape_errors:
                outcome.errors.extend(shape_errors)
                continue
            outcome.missing_products.add(product_id)
            outcome.errors.append(RecordError(index=index, product_id=product_id, loc="", msg=(
                f"no product with this product_id existed at this batch's sequence (sequence "
                f"{known_versions[product_id][CREATED]} created it later); {NEW_PRODUCT_HINT}")))
            continue
        fields = record
        if sequence is not None and base is not None:
            written = outcome.versions.get(product_id) or versions_of(product_id)
            fields = _newer_fields(record, index, sequence, written, outcome.superseded)
        candidate = fields if base is None else {**base, **fields}
        try:
            product = Product.model_validate(candidate)
        except ValidationError as exc:
            # The record's own errors first, whatever product it lands on (``check_record``).
            shape_errors = check_record(record, index)
            if base is None and not shape_errors:
                outcome.missing_products.add(product_id)
            outcome.errors.extend(shape_errors or record_errors(exc, index, product_id, is_new=base is None))
            continue
        if len(fields) < len(record):
            # A superseded field is not in the product that validated: the record must still be
            # valid as a whole (otherwise a valid product only proves the fields it kept).
            shape_errors = check_record(record, index)
            if shape_errors:
                outcome.errors.extend(shape_errors)
                continue
        merged[product_id] = product.to_record()
        if sequence is not None:
            written = outcome.versions.get(product_id) or dict(versions_of(product_id))
            updated = {**written, **{name: sequence for name in fields if name != CREATED}}
            if base is None or _creates_earlier(record, sequence, written):
                updated[CREATED] = sequence
                if product_id not in placed:
                    placed.append(product_id)
            outcome.versions[product_id] = updated

    if outcome.errors:
        outcome.versions = {}
        return outcome

    appended: list[str] = []
    for product_id, record in merged.items():
        if product_id not in position:
            if sequence is None:
                appended.append(product_id)
            outcome.changed_products[product_id] = record
            outcome.created += 1
        elif _same_product(record, stored[product_id]):
            outcome.unchanged += 1
        else:
            outcome.changed_products[product_id] = record
            outcome.previous[product_id] = stored[product_id]
            outcome.updated += 1
    outcome.appended = appended
    if sequence is not None and placed:
        order = _place(catalog.ids, placed, sequence, versions_of, position)
        if order is None:
            outcome.appended = placed
        else:
            outcome.moved = catalog.ids != order[: len(catalog.ids)]
            if order != catalog.ids:
                outcome.order = order
    return outcome


def _reader(versions: Versions) -> Callable[[str], Mapping[str, int]]:
    """``versions.get(product_id, {})``, fast for the state's layered versions (a ChainMap, whose
    ``get`` is generic Python: a batch asks it a few times per record)."""
    if not isinstance(versions, ChainMap):
        return lambda product_id: versions.get(product_id, _NONE)
    maps = versions.maps

    def versions_of(product_id: str) -> Mapping[str, int]:
        for layer in maps:
            found = layer.get(product_id)
            if found is not None:
                return found
        return _NONE

    return versions_of


_NONE: Mapping[str, int] = MappingProxyType({})


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


def _place(ids: list[str], placed: list[str], sequence: int, versions_of: Callable[[str], Mapping[str, int]],
           position: Mapping[str, int]) -> list[str] | None:
    """Insert ``placed`` as a block before the first product created by a higher sequence: the new
    order, or None when that is after every product (nothing moves). ``versions_of``: ``_reader``'s
    (the walk back from the end asks it once per product created later, thousands in a burst
    whose batches come out of order)."""
    known = any(product_id in position for product_id in placed)
    if not known and (not ids or versions_of(ids[-1]).get(CREATED, 0) <= sequence):
        return None  # new products, and none created later sits last: they go at the end
    chosen = set(placed)
    rest = [p for p in ids if p not in chosen] if known else ids
    at = len(rest)
    while at > 0 and versions_of(rest[at - 1]).get(CREATED, 0) > sequence:
        at -= 1
    return rest[:at] + placed + rest[at:]


def _same_product(merged: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Equal data, even when the stored product lacks fields that only hold their defaults."""
    if merged == stored:
        return True
    for name, value in merged.items():  # a loop, not any() over a generator: once per product a batch touches
        old = stored.get(name, value)
        if old != value and not isinstance(old, dict | list):
            return False  # a plain value there differs: no default can make up for it
    try:
        return Product.model_validate(stored).to_record() == merged
    except ValidationError:
        return False
