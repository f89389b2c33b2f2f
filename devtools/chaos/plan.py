"""What a chaos run submits: seeded, so that a failing run can be replayed exactly."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas import Product

SHARED_PRODUCTS = 12
CATEGORIES = ["Adventure", "Cruise", "Museum", "Sightseeing", "Family", "Luxury"]
CITIES = ["Dubai", "Abu Dhabi", "Sharjah", "Ras Al Khaimah", "Fujairah"]


@dataclass
class PlannedBatch:
    """One batch a producer submits; ``kind`` says what the run expects of it."""

    batch_id: str
    producer: int
    kind: str  # "patch", "create", "refused" (the producer's checks), "ghost" (the worker rejects)
    items: list[dict[str, Any]]
    send_twice: bool = False


@dataclass
class ChaosPlan:
    seed: int
    initial: list[dict[str, Any]]
    batches: list[PlannedBatch] = field(default_factory=list)

    def for_producer(self, producer: int) -> list[PlannedBatch]:
        return [batch for batch in self.batches if batch.producer == producer]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChaosPlan:
        return cls(seed=raw["seed"], initial=raw["initial"], batches=[PlannedBatch(**b) for b in raw["batches"]])


def _shared_id(n: int) -> str:
    return f"Chaos_Shared_{n:02d}"


def _tier(rng: random.Random) -> dict[str, Any]:
    return {"tier_name": rng.choice(["Adult", "Child", "Family", "VIP"]), "price_aed": float(rng.randrange(0, 2000, 5)),
            "currency": "AED"}


def _patch_fields(rng: random.Random, tag: str) -> dict[str, Any]:
    """A random subset of fields with values unique to this batch, so lost or stale writes show."""
    choices: dict[str, Any] = {
        "description_short": f"set by {tag}",
        "category": rng.choice(CATEGORIES),
        "destination_city": rng.choice(CITIES),
        "duration_hours": float(rng.randrange(1, 24)),
        "active": rng.random() < 0.8,
        "pricing": [_tier(rng) for _ in range(rng.randrange(0, 3))],
        "inclusions": [f"{tag} inclusion {k}" for k in range(rng.randrange(0, 3))],
    }
    names = rng.sample(sorted(choices), rng.randrange(1, 4))
    return {name: choices[name] for name in names}


def _new_product(product_id: str, rng: random.Random, tag: str) -> dict[str, Any]:
    record = {"product_id": product_id, "product_name": f"Chaos product {product_id}", "pricing": [_tier(rng)],
              "inclusions": ["Transfers"], "supplier_name": "Chaos Tours"}
    record.update(_patch_fields(rng, tag))
    return Product.model_validate(record).model_dump(mode="json", exclude_unset=True)


def make_plan(seed: int, batches: int, producers: int) -> ChaosPlan:
    rng = random.Random(seed)
    initial = [Product.model_validate(_new_product(_shared_id(n), rng, "the initial catalog")).to_record()
               for n in range(SHARED_PRODUCTS)]
    plan = ChaosPlan(seed=seed, initial=initial)
    for number in range(batches):
        batch_id = f"chaos-{seed}-{number:05d}"
        producer = number % producers
        roll = rng.random()
        if roll < 0.05:
            kind, items = "refused", [{"product_id": _shared_id(0), "pricing": [{"tier_name": "x", "price_aed": -1}]}]
        elif roll < 0.10:
            kind, items = "ghost", [{"product_id": f"Chaos_Ghost_{number}", "category": "Museum"}]
        elif roll < 0.35:
            kind = "create"
            items = [_new_product(f"Chaos_New_{number:05d}_{k}", rng, batch_id) for k in range(rng.randrange(1, 4))]
            if rng.random() < 0.5:
                items.append({"product_id": _shared_id(rng.randrange(SHARED_PRODUCTS)), **_patch_fields(rng, batch_id)})
        else:
            kind = "patch"
            targets = rng.sample(range(SHARED_PRODUCTS), rng.randrange(1, 4))
            items = [{"product_id": _shared_id(t), **_patch_fields(rng, batch_id)} for t in targets]
        plan.batches.append(PlannedBatch(batch_id, producer, kind, items,
                                         send_twice=kind != "refused" and rng.random() < 0.08))
    return plan
