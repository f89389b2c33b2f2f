"""The sample batches in examples/ are valid and show the merge semantics they claim to show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.product import Product, ProductPatch
from worker.merge import merge_batch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ATTRACTIONS = EXAMPLES / "uae_attractions.jsonl"
PRICE_UPDATE = EXAMPLES / "uae_price_update.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-blank line, as a producer would read the file."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        assert isinstance(record, dict), f"{path.name}:{number} is not a JSON object"
        records.append(record)
    return records


ATTRACTION_RECORDS = read_jsonl(ATTRACTIONS)
PRICE_UPDATE_RECORDS = read_jsonl(PRICE_UPDATE)


def test_the_attractions_example_holds_six_distinct_products() -> None:
    ids = [record["product_id"] for record in ATTRACTION_RECORDS]
    assert len(ids) == 6
    assert len(set(ids)) == 6


@pytest.mark.parametrize("record", ATTRACTION_RECORDS, ids=lambda record: record["product_id"])
def test_every_attraction_record_is_a_complete_valid_product(record: dict[str, Any]) -> None:
    product = Product.model_validate(record)
    assert 1 <= len(product.pricing) <= 3
    assert all(tier.currency == "AED" for tier in product.pricing)
    assert product.active is True
    # Written in full: nothing in the example relies on a default except the optional texts.
    for field in ("supplier_name", "destination_city", "category", "description_short",
                  "duration_hours", "exclusions", "booking_policy"):
        assert record.get(field) is not None, f"{field} is missing"


@pytest.mark.parametrize("record", PRICE_UPDATE_RECORDS, ids=lambda record: record["product_id"])
def test_every_price_update_record_is_a_patch_of_an_example_product(record: dict[str, Any]) -> None:
    patch = ProductPatch.model_validate(record)
    assert patch.product_id in {r["product_id"] for r in ATTRACTION_RECORDS}
    # A patch names only what changes: it must not be a whole product in disguise.
    assert set(record) < set(Product.model_fields)
    with pytest.raises(ValueError):
        Product.model_validate(record)


def test_the_price_update_example_holds_two_patches_for_different_products() -> None:
    ids = [record["product_id"] for record in PRICE_UPDATE_RECORDS]
    assert len(ids) == 2
    assert len(set(ids)) == 2


def test_merging_the_attractions_then_the_price_update_creates_six_then_updates_two() -> None:
    first = merge_batch([], ATTRACTION_RECORDS)
    assert first.errors == []
    assert (first.created, first.updated, first.unchanged) == (6, 0, 0)
    assert [p["product_id"] for p in first.products] == [r["product_id"] for r in ATTRACTION_RECORDS]

    second = merge_batch(first.products, PRICE_UPDATE_RECORDS)
    assert second.errors == []
    assert (second.created, second.updated, second.unchanged) == (0, 2, 0)

    # Patch semantics: the named fields are replaced, everything else is kept, order is kept.
    by_id = {p["product_id"]: p for p in second.products}
    before = {p["product_id"]: p for p in first.products}
    for patch in PRICE_UPDATE_RECORDS:
        merged = by_id[patch["product_id"]]
        assert merged == Product.model_validate({**before[patch["product_id"]], **patch}).to_record()
        for field, value in before[patch["product_id"]].items():
            if field not in patch:
                assert merged[field] == value
    assert [p["product_id"] for p in second.products] == [p["product_id"] for p in first.products]

    # Applying the same patch again changes nothing.
    again = merge_batch(second.products, PRICE_UPDATE_RECORDS)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
