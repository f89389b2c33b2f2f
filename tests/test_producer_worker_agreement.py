"""The producer's check and the worker's agree, on the same generated records.

The producer sees no catalog, so it cannot know whether a record creates a product or patches
one. What it promises (README, "From Python"): it refuses a record only when the worker would
reject it whatever the catalog holds, and it lets through every record the worker accepts as a
patch of an existing product. A record it lets through may still be rejected by the worker as
an incomplete *new* product; that is the one case the producer cannot see.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.validation import check_record
from worker.merge import merge_batch

PRODUCT_ID = "Dubai_MuseumOfTheFuture"
EXISTING = {
    "product_id": PRODUCT_ID, "product_name": "Museum of the Future", "inclusions": ["Entry"],
    "pricing": [{"tier_name": "Adult", "price_aed": 149.0, "currency": "AED"}],
}

good_tier = st.fixed_dictionaries({"tier_name": st.sampled_from(["Adult", "Child"]),
                                   "price_aed": st.floats(0, 5000, allow_nan=False)},
                                  optional={"currency": st.just("AED"),
                                            "validity_start": st.sampled_from([None, "2026-01-01"]),
                                            "validity_end": st.sampled_from([None, "2026-12-31"])})
bad_tier = st.one_of(
    st.fixed_dictionaries({"tier_name": st.just("Adult"), "price_aed": st.sampled_from([-1, float("inf"), "free"])}),
    st.fixed_dictionaries({"tier_name": st.just("Adult"), "price_aed": st.just(10), "currency": st.just("USD")}),
    st.fixed_dictionaries({"price_aed": st.just(10)}),
    st.just("not a tier"),
)
FIELD_VALUES: dict[str, Any] = {
    "product_name": st.one_of(st.text(min_size=1, max_size=20), st.just(None), st.integers()),
    "pricing": st.one_of(st.lists(good_tier, max_size=3), st.lists(st.one_of(good_tier, bad_tier), min_size=1,
                                                                     max_size=3), st.just("cheap")),
    "inclusions": st.one_of(st.lists(st.text(max_size=10), max_size=3), st.just([1, 2]), st.just(None)),
    "active": st.one_of(st.booleans(), st.just("yes")),
    "category": st.one_of(st.text(max_size=10), st.just(None), st.just(42)),
    "destination_city": st.one_of(st.sampled_from(["Dubai", "Abu Dhabi"]), st.just(None)),
    "duration_hours": st.one_of(st.floats(0, 48, allow_nan=False), st.just(None), st.just(-2), st.just("long")),
    "exclusions": st.one_of(st.lists(st.text(max_size=10), max_size=2), st.just(None), st.just("none")),
    "source_document": st.one_of(st.text(max_size=10), st.lists(st.text(max_size=5), max_size=2), st.just(None)),
    "prcing": st.just([]),  # a producer's typo: an unknown field
}
records = st.fixed_dictionaries(
    {"product_id": st.one_of(st.just(PRODUCT_ID), st.just(f" {PRODUCT_ID}"), st.just(""), st.just(7))},
    optional=FIELD_VALUES,
)


def worker_accepts(catalog: list[dict[str, Any]], record: dict[str, Any]) -> bool:
    return not merge_batch(catalog, [record]).errors


@settings(max_examples=400, deadline=None)
@given(records)
def test_the_producer_refuses_exactly_what_no_catalog_could_accept(record: dict[str, Any]) -> None:
    producer_accepts = not check_record(record, 0)
    as_patch = worker_accepts([EXISTING], record)
    as_new = worker_accepts([], record)
    # Refused by the producer: the worker would reject it as a patch and as a new product.
    # Let through: the worker accepts it at least as a patch of the existing product.
    assert producer_accepts == as_patch, (record, check_record(record, 0))
    assert not as_new or producer_accepts, record
