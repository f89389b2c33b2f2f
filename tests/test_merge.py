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


# --- order safety: any processing order gives the catalog of sequence order -----------------

from hypothesis import given, settings as hypothesis_settings, strategies as st  # noqa: E402

from worker.merge import CREATED  # noqa: E402

INITIAL_IDS = ["A", "B", "C"]
NEW_IDS = ["N1", "N2", "N3"]
tiers = st.lists(st.builds(lambda n, p: {"tier_name": n, "price_aed": p}, st.sampled_from(["Adult", "Child"]),
                           st.integers(0, 500)), max_size=2)
patch_fields = st.fixed_dictionaries({}, optional={
    "category": st.sampled_from(["Tour", "Cruise", "Museum"]),
    "description_short": st.text(alphabet="abc", max_size=3),
    "duration_hours": st.none() | st.integers(0, 12),
    "active": st.booleans(),
    "pricing": tiers,
})
patches = st.builds(lambda pid, fields: {"product_id": pid, **fields}, st.sampled_from(INITIAL_IDS), patch_fields)
creations = st.builds(lambda pid, fields: {**product(pid), **fields}, st.sampled_from(NEW_IDS), patch_fields)
invalid = st.just({"product_id": "A", "pricing": [{"tier_name": "x", "price_aed": -1}]})
batches = st.lists(st.lists(patches | creations | invalid, min_size=1, max_size=4), min_size=1, max_size=6)


def in_sequence_order(catalog: list[dict], batches_in_order: list[list[dict]]) -> list[dict]:
    for records in batches_in_order:
        outcome = merge_batch(catalog, records)
        if not outcome.errors:
            catalog = outcome.products
    return catalog


@hypothesis_settings(max_examples=300, deadline=None)
@given(batches=batches, order=st.randoms(use_true_random=False))
def test_any_processing_order_gives_the_catalog_of_sequence_order(batches: list[list[dict]], order) -> None:  # type: ignore[no-untyped-def]
    initial = [Product.model_validate(product(pid)).to_record() for pid in INITIAL_IDS]
    expected = in_sequence_order(initial, batches)
    sequenced = list(enumerate(batches, start=1))
    order.shuffle(sequenced)
    catalog, versions = initial, {}
    for sequence, records in sequenced:
        outcome = merge_batch(catalog, records, sequence, versions)
        if not outcome.errors:
            catalog = outcome.products
            versions = {**versions, **outcome.versions}
    assert catalog == expected


def test_a_field_written_by_a_later_batch_is_superseded_and_the_rest_still_applies() -> None:
    stored = Product.model_validate(product("A")).to_record()
    versions = {"A": {"category": 7}}
    outcome = merge_batch([stored], [{"product_id": "A", "category": "Old", "duration_hours": 2}], 5, versions)
    assert [(s.field, s.by_sequence) for s in outcome.superseded] == [("category", 7)]
    assert outcome.products[0]["category"] is None and outcome.products[0]["duration_hours"] == 2
    assert outcome.versions["A"] == {"category": 7, "duration_hours": 5}


def test_a_product_is_placed_by_the_sequence_that_created_it() -> None:
    later = merge_batch([], [product("LATER")], 9, {})
    earlier = merge_batch(later.products, [product("EARLY"), product("LATER")], 4, later.versions)
    assert [p["product_id"] for p in earlier.products] == ["EARLY", "LATER"]
    assert earlier.versions["LATER"][CREATED] == 4 and earlier.changed
