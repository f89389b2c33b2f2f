"""Synthetic products for the benchmarks, shaped like the real catalog's (~1.3 KB of JSON each)."""

from __future__ import annotations

import random
from typing import Any

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
