"""The one generator of synthetic catalogs and batches for the benchmarks.

Products are shaped like the real catalog's (~1.3 KB of indented JSON each). A batch of M records
carries patches of distinct existing products (a new price and text) and, when M > 1, a fifth of
new complete products: a supplier feed of price updates with some additions.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

CITIES = ("Dubai", "Abu Dhabi", "Sharjah", "Ras Al Khaimah", "Fujairah")
CATEGORIES = ("Sightseeing", "Adventure", "Attraction", "Cruise", "Transfer", "Concierge")


def make_product(product_id: str, rng: random.Random) -> dict[str, Any]:
    """A complete product with every field, about the size of the real catalog's products."""
    city = rng.choice(CITIES)
    return {
        "product_id": product_id,
        "product_name": f"{city} experience {product_id}",
        "pricing": [
            {"tier_name": "Adult", "price_aed": float(rng.randint(50, 1500)), "currency": "AED",
             "validity_start": "2025-12-12", "validity_end": "2026-12-31"},
            {"tier_name": "Child (3-11 years)", "price_aed": float(rng.randint(25, 900)), "currency": "AED",
             "validity_start": "2025-12-12", "validity_end": "2026-12-31"},
        ],
        "inclusions": ["Hotel pick-up/drop-off", "Entry tickets", "English-speaking guide", "Soft drinks"],
        "active": True,
        "supplier_name": "Benchmark Tours LLC",
        "destination_city": city,
        "category": rng.choice(CATEGORIES),
        "description_short": f"A half-day {city} outing with transfers, tickets and a guide ({product_id}).",
        "description_long": (f"Guests are collected from their hotel in {city} and driven to the first stop. "
                             "The guide explains the history of each place; photo stops are included, "
                             "and the tour ends with refreshments before the drive back."),
        "duration_hours": float(rng.randint(1, 12)),
        "exclusions": ["Meals", "Gratuities", "Personal expenses"],
        "booking_policy": "Free cancellation up to 24 hours before the start. Subject to weather.",
        "source_document": "benchmark.pdf",
    }


NEW_SHARE = 0.2


def existing_id(index: int) -> str:
    return f"P{index:07d}"


def make_catalog(products: int, rng: random.Random) -> list[dict[str, Any]]:
    return [make_product(existing_id(index), rng) for index in range(products)]


def catalog_bytes(products: list[dict[str, Any]]) -> bytes:
    """The catalog file's format (JSON array, 2-space indent, non-ASCII kept, final newline), made
    here with orjson and not by the code under test, so a broken serializer cannot shape the input."""
    return orjson.dumps(products, option=orjson.OPT_INDENT_2) + b"\n"


def make_batch(tag: str, records: int, products: int, rng: random.Random) -> list[dict[str, Any]]:
    """``records`` records for a catalog of ``products`` products: patches of distinct existing
    products and, unless it is a single record, a fifth of new products named after ``tag``."""
    new = round(records * NEW_SHARE) if records > 1 else 0
    patched = rng.sample(range(products), min(records - new, products))
    batch: list[dict[str, Any]] = [
        {"product_id": existing_id(index),
         "pricing": [{"tier_name": "Adult", "price_aed": float(rng.randint(50, 1500)), "currency": "AED"}],
         "description_short": f"Updated by benchmark batch {tag}."}
        for index in patched
    ]
    batch += [make_product(f"NEW-{tag}-{k:04d}", rng) for k in range(records - len(batch))]
    rng.shuffle(batch)
    return batch
