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


def test_products_created_after_every_other_are_told_as_appended_not_as_a_new_order_of_every_id() -> None:
    # A catalog's every id copied per batch that creates products was most of a batch's cost at
    # 100,000 products; those after every other are told apart, in order, with or without a sequence.
    plain = merge_batch([product("A")], [product("C"), product("B")])
    placed = merge_batch([product("A")], [product("C"), product("B")], 5, {"A": {CREATED: 3}})
    before_a_later = merge_batch([product("A")], [product("C")], 2, {"A": {CREATED: 3}})
    assert (plain.order, plain.appended) == (None, ["C", "B"])
    assert (placed.order, placed.appended, placed.moved) == (None, ["C", "B"], False)
    assert (before_a_later.order, before_a_later.appended) == (["C", "A"], [])
    assert [p["product_id"] for p in placed.products] == ["A", "C", "B"]


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
# The reference is devtools/reference_model.py, which knows nothing of versions or placement.

import pytest  # noqa: E402
from hypothesis import given, settings as hypothesis_settings, strategies as st  # noqa: E402

from devtools.reference_model import apply_in_sequence_order  # noqa: E402
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
# Patches name products of the initial catalog and products that some batch creates (in a lower
# batch, a higher one, or none at all): a patch may come before the record that creates it.
patches = st.builds(lambda pid, fields: {"product_id": pid, **fields}, st.sampled_from(INITIAL_IDS + NEW_IDS),
                    patch_fields)
creations = st.builds(lambda pid, fields: {**product(pid), **fields}, st.sampled_from(NEW_IDS), patch_fields)
invalid = st.just({"product_id": "A", "pricing": [{"tier_name": "x", "price_aed": -1}]})
batches = st.lists(st.lists(patches | creations | invalid, min_size=1, max_size=4), min_size=1, max_size=6)


def initial_catalog() -> list[dict]:
    return [Product.model_validate(product(pid)).to_record() for pid in INITIAL_IDS]


def patches_before_creation(batches: list[list[dict]]) -> list[tuple[int, str]]:
    """(sequence, product_id) of every record that, in sequence order, patches a product that
    does not exist yet at that point (the reference model's view), while a higher sequence
    sends a complete record for it."""
    def complete(record: dict) -> bool:
        try:
            Product.model_validate(record)
        except ValueError:  # pydantic's ValidationError is one
            return False
        return True

    found = []
    catalog = initial_catalog()
    for sequence, records in enumerate(batches, start=1):
        existing = {p["product_id"] for p in catalog}
        for record in records:
            product_id = record["product_id"]
            if product_id not in existing and not complete(record):
                if any(complete(r) and r["product_id"] == product_id for later in batches[sequence:] for r in later):
                    found.append((sequence, product_id))
            elif product_id not in existing:
                existing.add(product_id)
        catalog = apply_in_sequence_order(catalog, [records])
    return found


def merge_in_order(initial: list[dict], sequenced: list[tuple[int, list[dict]]]) -> list[dict]:
    """Process batches in the given order with merge_batch and the versions, as the store does,
    retrying (at the end of the queue) a batch whose only errors are products that a lower,
    still unprocessed batch may create: the rule of docs/commit-protocol.md."""
    catalog, versions = initial, {}
    done: set[int] = set()
    queue = list(sequenced)
    while queue:
        sequence, records = queue.pop(0)
        outcome = merge_batch(catalog, records, sequence, versions)
        only_missing = outcome.missing_products and all(
            e.product_id in outcome.missing_products for e in outcome.errors)
        if outcome.errors and only_missing and any(s < sequence and s not in done for s, _ in queue):
            queue.append((sequence, records))
            continue
        done.add(sequence)
        if not outcome.errors:
            catalog = outcome.products
            versions = {**versions, **outcome.versions}
    return catalog


@hypothesis_settings(max_examples=500, deadline=None)
@given(batches=batches, order=st.randoms(use_true_random=False))
def test_any_processing_order_gives_the_catalog_of_the_reference_model(batches: list[list[dict]], order) -> None:  # type: ignore[no-untyped-def]
    expected = apply_in_sequence_order(initial_catalog(), batches)
    sequenced = list(enumerate(batches, start=1))
    order.shuffle(sequenced)
    assert merge_in_order(initial_catalog(), sequenced) == expected


CREATE_LATER = [{"product_id": "N1", "category": "Tour"}, product("N1")]  # sequence 1 patches, 2 creates


def test_a_patch_of_a_product_only_a_later_batch_creates_never_lands_whatever_the_order() -> None:
    batches = [[CREATE_LATER[0]], [CREATE_LATER[1]]]
    expected = apply_in_sequence_order(initial_catalog(), batches)
    assert merge_in_order(initial_catalog(), [(2, batches[1]), (1, batches[0])]) == expected


def test_the_batch_of_such_a_patch_is_rejected_whole_whatever_the_order() -> None:
    batches = [[{"product_id": "A", "category": "Museum"}, {"product_id": "N1", "product_name": "x"}],
               [CREATE_LATER[1]]]
    expected = apply_in_sequence_order(initial_catalog(), batches)
    assert merge_in_order(initial_catalog(), [(2, batches[1]), (1, batches[0])]) == expected


def test_the_reference_model_rejects_a_batch_whole_and_appends_new_products_in_sequence_order() -> None:
    """The model itself, on a case worked out by hand."""
    a, b = initial_catalog()[:2]
    catalog = apply_in_sequence_order([a, b], [
        [product("N2"), {"product_id": "A", "category": "Tour"}],
        [{"product_id": "B", "category": "Cruise"}, {"product_id": "N9", "category": "Tour"}],  # N9 missing
        [{"product_id": "N2", "category": "Museum"}, product("N1")],
    ])
    assert [p["product_id"] for p in catalog] == ["A", "B", "N2", "N1"]
    assert (catalog[0]["category"], catalog[1]["category"], catalog[2]["category"]) == ("Tour", None, "Museum")


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


# --- edges that mutation testing showed untested (tools/mutation.py) ---------------------------

def test_counts_add_up_over_several_products() -> None:
    catalog = [Product.model_validate(product(pid, category="Tour")).to_record() for pid in "ABCD"]
    records = [{"product_id": "A", "category": "Tour"}, {"product_id": "B", "category": "Tour"},
               {"product_id": "C", "category": "Cruise"}, {"product_id": "D", "category": "Cruise"}]
    outcome = merge_batch(catalog, records)
    assert (outcome.created, outcome.updated, outcome.unchanged) == (0, 2, 2)


def test_the_product_id_is_never_reported_as_superseded() -> None:
    stored = Product.model_validate(product("A")).to_record()
    versions = {"A": {"category": 7, CREATED: 3}}
    outcome = merge_batch([stored], [{"product_id": "A", "category": "Old"}], 5, versions)
    assert [(s.field, s.by_sequence) for s in outcome.superseded] == [("category", 7)]


def test_a_product_created_by_a_lower_sequence_goes_before_every_product_created_by_higher_ones() -> None:
    later = merge_batch([], [product("LATER")], 9, {})
    earlier = merge_batch(later.products, [product("EARLY")], 4, later.versions)
    assert [p["product_id"] for p in earlier.products] == ["EARLY", "LATER"]


def test_a_creation_that_only_moves_a_product_still_counts_as_a_change() -> None:
    """LATER was created by 9, then MIDDLE by 6; sequence 4 sends LATER complete, unchanged: created by 4 now."""
    first = merge_batch([], [product("LATER")], 9, {})
    versions = dict(first.versions)
    second = merge_batch(first.products, [product("MIDDLE")], 6, versions)
    versions.update(second.versions)
    assert [p["product_id"] for p in second.products] == ["MIDDLE", "LATER"]
    moved = merge_batch(second.products, [product("LATER")], 4, versions)
    assert (moved.created, moved.updated, moved.unchanged) == (0, 0, 1)
    assert [p["product_id"] for p in moved.products] == ["LATER", "MIDDLE"] and moved.changed


def test_a_complete_record_for_a_product_created_by_a_lower_sequence_keeps_its_place() -> None:
    first = merge_batch([], [product("A"), product("B")], 1, {})
    again = merge_batch(first.products, [product("A", category="Tour")], 3, first.versions)
    assert [p["product_id"] for p in again.products] == ["A", "B"]
    assert again.versions["A"][CREATED] == 1


def test_a_patch_that_repairs_an_invalid_stored_product_is_an_update() -> None:
    broken = {**product("A"), "pricing": [{"tier_name": "Adult", "price_aed": -1}]}  # edited by hand
    outcome = merge_batch([broken], [{"product_id": "A", "pricing": [{"tier_name": "Adult", "price_aed": 10}]}])
    assert (outcome.updated, outcome.unchanged) == (1, 0)
    assert outcome.products[0]["pricing"][0]["price_aed"] == 10


def test_an_invalid_value_in_a_superseded_field_still_rejects_the_record() -> None:
    # The superseded field never reaches the product that is validated; the record is checked whole.
    stored = Product.model_validate(product("A")).to_record()
    versions = {"A": {"category": 7, CREATED: 1}}
    outcome = merge_batch([stored], [{"product_id": "A", "category": 42, "duration_hours": 2}], 5, versions)
    assert [(e.index, e.loc) for e in outcome.errors] == [(0, "category")]
    assert not outcome.changed and outcome.products == [stored]


def test_a_record_invalid_on_its_own_is_reported_with_its_own_errors_whatever_it_lands_on() -> None:
    broken = {**product("A"), "pricing": [{"tier_name": "Adult", "price_aed": -1}]}  # edited by hand
    outcome = merge_batch([broken], [{"product_id": "A", "duration_hours": "two"}])
    assert [(e.index, e.loc) for e in outcome.errors] == [(0, "duration_hours")]


def test_a_record_without_a_string_product_id_is_an_error_not_skipped() -> None:
    outcome = merge_batch([], [{"product_id": 7, **{k: v for k, v in product("X").items() if k != "product_id"}},
                               {"product_name": "no id"}])
    assert [(e.index, e.loc) for e in outcome.errors] == [(0, "product_id"), (1, "product_id")]


def test_a_changed_plain_field_beside_a_changed_list_is_an_update() -> None:
    stored = product("A", category="Tour")  # as the replaced system stored it: defaults left out
    outcome = merge_batch([stored], [{"product_id": "A", "category": "Cruise",
                                      "pricing": [{"tier_name": "Adult", "price_aed": 99}]}])
    assert (outcome.updated, outcome.unchanged) == (1, 0)
