"""schemas.product: what a product is, and what is refused."""

from __future__ import annotations

import math
import re

import pytest
from pydantic import ValidationError

from schemas import PricingTier, Product, ProductPatch, format_loc
from schemas.product import MAX_PRODUCT_ID_LENGTH, PRODUCT_FIELDS
from schemas.validation import check_record
from tests.helpers import product


def test_a_minimal_new_product_needs_only_id_name_pricing_and_inclusions() -> None:
    item = Product.model_validate({"product_id": "P1", "product_name": "Tour", "pricing": [], "inclusions": []})
    assert item.active is True
    assert item.pricing == []


@pytest.mark.parametrize("missing", ["product_id", "product_name", "pricing", "inclusions"])
def test_a_new_product_without_a_required_field_is_refused(missing: str) -> None:
    record = product("P1")
    del record[missing]
    with pytest.raises(ValidationError) as info:
        Product.model_validate(record)
    assert info.value.errors()[0]["loc"] == (missing,)


def test_an_unknown_field_is_an_error_that_names_it() -> None:
    with pytest.raises(ValidationError) as info:
        Product.model_validate({**product("P1"), "prcing": []})
    assert [e["loc"] for e in info.value.errors()] == [("prcing",)]


@pytest.mark.parametrize("price", [math.nan, math.inf, -math.inf, -0.01, "350", True])
def test_prices_that_are_not_finite_non_negative_numbers_are_refused(price: object) -> None:
    with pytest.raises(ValidationError) as info:
        PricingTier.model_validate({"tier_name": "Adult", "price_aed": price})
    assert info.value.errors()[0]["loc"] == ("price_aed",)


def test_an_integer_price_is_stored_as_a_float() -> None:
    assert PricingTier.model_validate({"tier_name": "Adult", "price_aed": 350}).price_aed == 350.0


def test_currency_other_than_aed_is_refused() -> None:
    with pytest.raises(ValidationError):
        PricingTier.model_validate({"tier_name": "Adult", "price_aed": 1, "currency": "USD"})


def test_validity_end_before_start_is_refused() -> None:
    with pytest.raises(ValidationError, match="validity_end is before validity_start"):
        PricingTier.model_validate(
            {"tier_name": "A", "price_aed": 1, "validity_start": "2026-02-01", "validity_end": "2026-01-01"}
        )


@pytest.mark.parametrize("bad_id", ["", " P1", "P1 ", "\tP1", 42])
def test_product_id_must_be_a_non_empty_string_without_surrounding_space(bad_id: object) -> None:
    with pytest.raises(ValidationError):
        Product.model_validate({**product("x"), "product_id": bad_id})


def test_records_dump_every_field_in_the_catalogs_order() -> None:
    record = Product.model_validate(product("P1")).to_record()
    assert tuple(record) == PRODUCT_FIELDS
    assert PRODUCT_FIELDS[:5] == ("product_id", "product_name", "pricing", "inclusions", "active")
    assert PRODUCT_FIELDS[-1] == "source_document"
    assert tuple(record["pricing"][0]) == ("tier_name", "price_aed", "currency", "validity_start", "validity_end")


def test_dates_are_written_as_iso_strings() -> None:
    tier = {"tier_name": "A", "price_aed": 1, "validity_start": "2025-12-12", "validity_end": "2026-12-31"}
    record = Product.model_validate(product("P1", pricing=[tier])).to_record()
    assert record["pricing"][0]["validity_start"] == "2025-12-12"


def test_a_patch_needs_only_a_product_id_but_checks_the_fields_it_gives() -> None:
    assert ProductPatch.model_validate({"product_id": "P1"}).pricing is None
    with pytest.raises(ValidationError) as info:
        ProductPatch.model_validate({"product_id": "P1", "duration_hours": "long"})
    assert info.value.errors()[0]["loc"] == ("duration_hours",)


def test_a_patch_has_the_same_fields_as_a_product() -> None:
    assert set(ProductPatch.model_fields) == set(Product.model_fields)


def test_error_locations_read_as_field_paths() -> None:
    assert format_loc(("pricing", 0, "price_aed")) == "pricing[0].price_aed"
    assert format_loc(("product_id",)) == "product_id"
    assert format_loc(()) == ""


@pytest.mark.parametrize(
    ("bad_id", "reason"),
    [
        ("Addon_Quad_350cc\u200b", "U+200B"),  # zero-width space: a look-alike of Addon_Quad_350cc
        ("Addon\u202eQuad", "U+202E"),  # right-to-left override
        ("Addon\u2066Quad\u2069", "U+2066"),  # bidi isolate
        ("A\x1b[31mB", "U+001B"),  # terminal escape
        ("A\x00B", "U+0000"),
        ("A\x7fB", "U+007F"),
        ("A\u00adB", "U+00AD"),  # soft hyphen, invisible
        ("A\ufeffB", "U+FEFF"),
    ],
)
def test_product_id_refuses_control_bidi_and_invisible_characters(bad_id: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)) as info:
        Product.model_validate({**product("x"), "product_id": bad_id})
    assert info.value.errors()[0]["loc"] == ("product_id",)
    with pytest.raises(ValidationError, match=re.escape(reason)):
        ProductPatch.model_validate({"product_id": bad_id})


def test_product_id_must_be_nfc_and_says_so() -> None:
    decomposed = "Cafe\u0301_Tour"  # e + combining acute: looks like the NFC "Café_Tour"
    with pytest.raises(ValidationError, match="NFC"):
        ProductPatch.model_validate({"product_id": decomposed})
    assert ProductPatch.model_validate({"product_id": "Caf\u00e9_Tour"}).product_id == "Caf\u00e9_Tour"


def test_product_id_length_is_bounded() -> None:
    assert ProductPatch.model_validate({"product_id": "P" * 200}).product_id
    with pytest.raises(ValidationError) as info:
        ProductPatch.model_validate({"product_id": "P" * 201})
    assert info.value.errors()[0]["loc"] == ("product_id",)


def test_ordinary_ids_with_letters_of_any_script_are_accepted() -> None:
    for good in ("Addon_Quad_350cc", "متحف-اللوفر", "Burj Khalifa 124/125", "ツアー-1"):
        assert ProductPatch.model_validate({"product_id": good}).product_id == good


def test_an_over_long_product_id_is_not_echoed_whole_in_every_error() -> None:
    errors = check_record({"product_id": "P" * 1_000_000, "prcing": [], "category": 5}, 0)
    assert {e.loc for e in errors} >= {"product_id", "prcing", "category"}
    assert all(e.product_id is not None and len(e.product_id) <= MAX_PRODUCT_ID_LENGTH + 1 for e in errors)
