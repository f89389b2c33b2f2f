"""worker.merge: the merge-upsert rule, all or nothing, with every error reported."""

from __future__ import annotations

import json
from pathlib import Path

from producers.files import read_batch_file
from schemas import Product
from tests.helpers import product
from worker.merge import merge_batch


def test_new_products_are_created_and_appended_in_batch_order() -> None:
    outcome = merge_batch([product("A")], [product("C"), product("B")])
    assert [p["product_id"] for p in outcome.products] == ["A", "C", "B"]
    assert (outcome.created, outcome.updated, outcome.unchanged) == (2, 0, 0)


def test_a_patch_repeating_the_stored_values_of_a_product_stored_without_defaults_is_unchanged() -> None:
    stored = product("A", category="Tour")  # no "active", no optional fields: as hand-written catalogs are
    outcome = merge_batch([stored], [{"product_id": "A", "category": "Tour"}])
    assert (outcome.updated, outcome.unchanged) == (0, 1)
    assert outcome.products == [stored]


def test_a_record_for_an_existing_product_replaces_only_the_top_level_keys_it_names() -> None:
    stored = Product.model_validate(product("A", category="Tour", inclusions=["Lunch"])).to_record()
    outcome = merge_batch([stored], [{"product_id": "A", "category": "Cruise"}])
    merged = outcome.products[0]
    assert merged["category"] == "Cruise"
    assert merged["inclusions"] == ["Lunch"]
    assert outcome.updated == 1


def test_a_patch_replaces_lists_whole_rather_than_merging_them() -> None:
    stored = Product.model_validate(product("A")).to_record()
    new_pricing = [{"tier_name": "Child", "price_aed": 50}]
    merged = merge_batch([stored], [{"product_id": "A", "pricing": new_pricing}]).products[0]
    assert [t["tier_name"] for t in merged["pricing"]] == ["Child"]


def test_existing_products_keep_their_position() -> None:
    catalog = [Product.model_validate(product(pid)).to_record() for pid in "ABC"]
    outcome = merge_batch(catalog, [product("D"), {"product_id": "B", "category": "X"}])
    assert [p["product_id"] for p in outcome.products] == ["A", "B", "C", "D"]


def test_a_later_record_for_the_same_id_patches_the_earlier_one() -> None:
    outcome = merge_batch([], [product("A", category="One"), {"product_id": "A", "category": "Two"}])
    assert outcome.products[0]["category"] == "Two"
    assert outcome.created == 1


def test_a_patch_that_sets_the_same_values_counts_as_unchanged() -> None:
    stored = Product.model_validate(product("A", category="Tour")).to_record()
    outcome = merge_batch([stored], [{"product_id": "A", "category": "Tour"}])
    assert (outcome.created, outcome.updated, outcome.unchanged) == (0, 0, 1)
    assert not outcome.changed


def test_one_invalid_record_rejects_the_whole_batch_and_every_error_is_listed() -> None:
    stored = Product.model_validate(product("A")).to_record()
    records = [
        product("NEW-OK"),
        {"product_id": "A", "pricing": [{"tier_name": "Adult", "price_aed": -5}]},
        {"product_id": "B", "product_name": "no pricing"},
        "not an object",
        {"product_id": "A", "prcing": []},
    ]
    outcome = merge_batch([stored], records)
    assert not outcome.changed
    assert outcome.products == [stored]
    found = {(e.index, e.product_id, e.loc) for e in outcome.errors}
    assert found == {
        (1, "A", "pricing[0].price_aed"),
        (2, "B", "pricing"),
        (2, "B", "inclusions"),
        (3, None, ""),
        (4, "A", "prcing"),
    }


def test_a_new_product_missing_fields_is_told_why_they_are_required() -> None:
    outcome = merge_batch([], [{"product_id": "GHOST", "category": "Tour"}])
    messages = {e.loc: e.msg for e in outcome.errors}
    assert "new product" in messages["product_name"]


def test_a_patch_that_makes_a_stored_product_invalid_is_refused() -> None:
    stored = Product.model_validate(product("A")).to_record()
    outcome = merge_batch([stored], [{"product_id": "A", "product_name": None}])
    assert [(e.loc, e.index) for e in outcome.errors] == [("product_name", 0)]


def test_the_input_catalog_is_not_modified() -> None:
    stored = Product.model_validate(product("A")).to_record()
    snapshot = json.dumps(stored)
    merge_batch([stored], [{"product_id": "A", "category": "Changed"}])
    assert json.dumps(stored) == snapshot


def test_every_seed_batch_applies_to_the_seed_catalog_in_turn(seed_dir: Path) -> None:
    catalog = json.loads((seed_dir / "products.json").read_text(encoding="utf-8"))
    batches = sorted((seed_dir / "batches").glob("*.jsonl"))
    assert batches, f"no seed batches in {seed_dir / 'batches'}"
    for batch_path in batches:
        batch = read_batch_file(batch_path, max_bytes=16 * 1024 * 1024)
        outcome = merge_batch(catalog, batch.records)
        assert outcome.errors == [], f"{batch_path.name}: {outcome.errors}"
        assert len(outcome.products) == len(catalog)  # every seed record patches an existing product
        before = {p["product_id"]: p for p in catalog}
        after = {p["product_id"]: p for p in outcome.products}
        for record in batch.records:
            merged, original = after[record["product_id"]], before[record["product_id"]]
            for key, value in record.items():
                if key == "pricing":
                    assert [(t["tier_name"], t["price_aed"]) for t in merged[key]] == [
                        (t["tier_name"], t["price_aed"]) for t in value
                    ]
                else:
                    assert merged[key] == value, (batch_path.name, record["product_id"], key)
            untouched = set(original) - set(record)
            assert all(merged.get(key) == original[key] for key in untouched)
        catalog = outcome.products
    assert all(Product.model_validate(p) for p in catalog)


def test_seed_products_with_empty_pricing_stay_valid(seed_dir: Path) -> None:
    catalog = json.loads((seed_dir / "products.json").read_text(encoding="utf-8"))
    empty = [p for p in catalog if p["pricing"] == []]
    assert empty, "the seed catalog is expected to hold products with empty pricing"
    outcome = merge_batch(catalog, [{"product_id": empty[0]["product_id"], "active": False}])
    assert outcome.errors == [] and outcome.updated == 1
