"""What a batch would change, and what differs between two catalogs: expectations written out by hand."""

from __future__ import annotations

from typing import Any

from worker.catalog_diff import ABSENT, ValueChange, diff_catalogs, preview_batch, value_changes
from worker.changes import FieldChange, ProductChange


def tier(price: float, name: str = "Adult") -> dict[str, Any]:
    return {"tier_name": name, "price_aed": price, "currency": "AED", "validity_start": None, "validity_end": None}


def stored(product_id: str, price: float = 100.0, **fields: Any) -> dict[str, Any]:
    """A product as the catalog stores it after a merge: every field of the schema, in schema order."""
    record: dict[str, Any] = {
        "product_id": product_id, "product_name": f"Product {product_id}", "pricing": [tier(price)],
        "inclusions": ["Transfers"], "active": True, "supplier_name": None, "destination_city": None,
        "category": None, "description_short": None, "description_long": None, "duration_hours": None,
        "exclusions": None, "booking_policy": None, "source_document": None,
    }
    record.update(fields)
    return record


CATALOG = [stored("A"), stored("B", category="Cruise"), stored("C")]


def test_a_price_patch_is_shown_as_the_pricing_field_old_and_new() -> None:
    preview = preview_batch(CATALOG, [{"product_id": "B", "pricing": [{"tier_name": "Adult", "price_aed": 120}]}])
    assert preview.diff.products == [
        ProductChange(product_id="B", fields=[FieldChange(field="pricing", old=[tier(100.0)], new=[tier(120.0)])]),
    ]
    assert (preview.diff.created, preview.diff.changed, preview.diff.unchanged) == (0, 1, 0)
    assert not preview.diff.rejected and preview.diff.removed == []


def test_a_new_product_is_created_with_every_field_new_and_listed_after_the_existing_ones() -> None:
    new = {"product_id": "N", "product_name": "New", "pricing": [{"tier_name": "Adult", "price_aed": 5}],
           "inclusions": []}
    preview = preview_batch(CATALOG, [new, {"product_id": "A", "category": "Tour"}])
    [changed_a, created_n] = preview.diff.products
    assert changed_a == ProductChange(product_id="A", fields=[FieldChange(field="category", old=None, new="Tour")])
    assert created_n.product_id == "N" and created_n.created
    assert [change.field for change in created_n.fields] == [
        "product_id", "product_name", "pricing", "inclusions", "active", "supplier_name", "destination_city",
        "category", "description_short", "description_long", "duration_hours", "exclusions", "booking_policy",
        "source_document"]
    assert all(change.old_absent and change.old is None for change in created_n.fields)
    assert created_n.fields[2] == FieldChange(field="pricing", new=[tier(5.0)], old_absent=True)
    assert [p["product_id"] for p in preview.products_after] == ["A", "B", "C", "N"]


def test_a_record_that_repeats_the_stored_values_counts_as_unchanged_and_is_not_listed() -> None:
    preview = preview_batch(CATALOG, [{"product_id": "B", "category": "Cruise"}, {"product_id": "C", "active": True}])
    assert preview.diff.products == [] and preview.diff.unchanged == 2 and not preview.diff.differs


def test_later_records_patch_earlier_ones_so_a_created_product_shows_its_final_values() -> None:
    new = {"product_id": "N", "product_name": "New", "pricing": [], "inclusions": []}
    preview = preview_batch(CATALOG, [new, {"product_id": "N", "product_name": "Newer"}])
    [created] = preview.diff.products
    assert FieldChange(field="product_name", new="Newer", old_absent=True) in created.fields
    assert (preview.diff.created, preview.diff.changed) == (1, 0)


def test_a_batch_with_one_invalid_record_would_be_rejected_and_would_change_nothing() -> None:
    batch = [{"product_id": "A", "category": "Tour"}, {"product_id": "B", "pricing": [{"price_aed": -1}]},
             {"product_id": "Z", "category": "Tour"}]
    preview = preview_batch(CATALOG, batch)
    assert preview.diff.rejected
    assert {(error.index, error.product_id) for error in preview.diff.errors} >= {(1, "B"), (2, "Z")}
    assert preview.diff.products == [] and preview.diff.unchanged == 0
    assert preview.products_after == CATALOG


def test_a_stored_product_missing_optional_fields_gains_them_as_apply_would_write_them() -> None:
    bare = {"product_id": "A", "product_name": "Bare", "pricing": [], "inclusions": []}
    preview = preview_batch([bare], [{"product_id": "A", "category": "Tour"}])
    [change] = preview.diff.products
    by_field = {item.field: item for item in change.fields}
    assert by_field["category"] == FieldChange(field="category", new="Tour", old_absent=True)
    assert by_field["active"] == FieldChange(field="active", new=True, old_absent=True)
    assert "product_name" not in by_field


def test_the_catalog_a_preview_leaves_is_what_the_next_file_is_previewed_against() -> None:
    new = {"product_id": "N", "product_name": "New", "pricing": [], "inclusions": []}
    first = preview_batch(CATALOG, [new])
    second = preview_batch(first.products_after, [{"product_id": "N", "category": "Tour"}])
    assert second.diff.products == [
        ProductChange(product_id="N", fields=[FieldChange(field="category", old=None, new="Tour")])]
    assert preview_batch(CATALOG, [{"product_id": "N", "category": "Tour"}]).diff.rejected


def test_two_catalogs_differ_by_created_changed_and_removed_products() -> None:
    before = [stored("A"), stored("B"), stored("C")]
    after = [stored("A"), stored("C", price=90.0), stored("D")]
    diff = diff_catalogs(before, after)
    assert diff.products == [
        ProductChange(product_id="C", fields=[FieldChange(field="pricing", old=[tier(100.0)], new=[tier(90.0)])]),
        ProductChange(product_id="D", created=True, fields=[
            FieldChange(field=name, new=value, old_absent=True) for name, value in stored("D").items()]),
    ]
    assert [removed.product_id for removed in diff.removed] == ["B"]
    assert diff.removed[0].fields[0] == FieldChange(field="product_id", old="B", new_absent=True)
    assert len(diff.removed[0].fields) == 14 and all(item.new_absent for item in diff.removed[0].fields)
    assert (diff.created, diff.changed, diff.unchanged, len(diff.removed)) == (1, 1, 1, 1)
    assert not diff.order_changed


def test_a_field_dropped_from_a_product_is_shown_as_removed_from_it() -> None:
    before = [{"product_id": "A", "category": "Tour", "active": True}]
    after = [{"product_id": "A", "active": False}]
    assert diff_catalogs(before, after).products == [ProductChange(product_id="A", fields=[
        FieldChange(field="active", old=True, new=False), FieldChange(field="category", old="Tour", new_absent=True)])]


def test_the_same_products_in_another_order_differ_only_in_order() -> None:
    diff = diff_catalogs([stored("A"), stored("B")], [stored("B"), stored("A")])
    assert diff.products == [] and diff.unchanged == 2 and diff.order_changed and diff.differs


def test_identical_catalogs_do_not_differ() -> None:
    diff = diff_catalogs(CATALOG, [dict(product) for product in CATALOG])
    assert not diff.differs and diff.unchanged == 3


def test_a_price_change_inside_pricing_reads_as_the_one_value_that_changed() -> None:
    child = tier(99.0, "Child")
    change = FieldChange(field="pricing", old=[tier(149.0), child], new=[tier(159.0), child])
    assert value_changes(change) == [ValueChange("pricing[0].price_aed", 149.0, 159.0)]


def test_items_added_to_or_removed_from_a_list_show_by_index_with_an_absent_side() -> None:
    grew = FieldChange(field="inclusions", old=["Transfers"], new=["Transfers", "Lunch", "Guide"])
    assert value_changes(grew) == [ValueChange("inclusions[1]", ABSENT, "Lunch"),
                                   ValueChange("inclusions[2]", ABSENT, "Guide")]
    shrank = FieldChange(field="pricing", old=[tier(50.0), tier(25.0, "Child")], new=[tier(55.0)])
    assert value_changes(shrank) == [ValueChange("pricing[0].price_aed", 50.0, 55.0),
                                     ValueChange("pricing[1]", tier(25.0, "Child"), ABSENT)]


def test_a_list_that_replaces_another_kind_of_value_is_shown_whole() -> None:
    change = FieldChange(field="source_document", old="manual.docx", new=["manual.docx", "sheet.xlsx"])
    assert value_changes(change) == [ValueChange("source_document", "manual.docx", ["manual.docx", "sheet.xlsx"])]


def test_keys_added_and_removed_inside_an_object_show_as_absent() -> None:
    change = FieldChange(field="meta", old={"a": 1, "gone": 2}, new={"a": 1, "added": None})
    assert value_changes(change) == [ValueChange("meta.added", ABSENT, None), ValueChange("meta.gone", 2, ABSENT)]


def test_a_new_field_and_a_removed_field_show_their_absent_side() -> None:
    assert value_changes(FieldChange(field="category", new="Tour", old_absent=True)) == [
        ValueChange("category", ABSENT, "Tour")]
    assert value_changes(FieldChange(field="category", old=None, new_absent=True)) == [
        ValueChange("category", None, ABSENT)]


def test_values_nested_past_the_detail_depth_are_shown_whole() -> None:
    deep_old: Any = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    deep_new: Any = {"a": {"b": {"c": {"d": {"e": 2}}}}}
    assert value_changes(FieldChange(field="x", old=deep_old, new=deep_new)) == [
        ValueChange("x.a.b.c.d", {"e": 1}, {"e": 2})]
