#!/usr/bin/env python
"""What the state file (ledger, field versions, fence) costs per commit.

Builds the state of a catalog of C products whose every product has V versioned fields, with
a ledger of L batch ids, and times what each commit adds: serializing the state and writing it
to an fsynced temp file (the rename and folder fsync are shared with the catalog's). Also times
parsing it, which every write does once: ``parse_ms`` is the full load (strict validation of
every field, schemas/state.py), ``json_only_ms`` orjson alone, i.e. what a load cost before the
state was validated. Prints one JSON object; times in ms over repeats.

    .venv/bin/python bench/state_cost.py --products 10000 --ledger 1000 10000 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from schemas import BatchResult, BatchStatus
from worker.atomic import discard, write_temp
from worker.state import CatalogState, parse_state, serialize_state

FIELDS = ("product_id", "pricing", "category", "description_short", "duration_hours", "active")


def build_state(products: int, ledger: int) -> CatalogState:
    state = CatalogState(fence=ledger + 1)
    state.versions = {f"P{i:06d}": {name: 1000 + i % 97 for name in FIELDS} for i in range(products)}
    now = dt.datetime.now(dt.UTC)
    for n in range(ledger):
        result = BatchResult(batch_id=f"batch-{n:032x}", status=BatchStatus.APPLIED, created=3, updated=40,
                             unchanged=57, sequence=n + 1, fence=n + 1, backup=f"/data/backups/products_{n}.json")
        state.record(result, now, keep_days=30, keep_ids=ledger)
    return state


def timed(action, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return {"median": round(statistics.median(samples), 2), "min": round(min(samples), 2),
            "max": round(max(samples), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--ledger", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "products.json.state"
        for ledger in args.ledger:
            state = build_state(args.products, ledger)
            data = serialize_state(state)
            figures.append({
                "products": args.products, "ledger_ids": ledger, "state_bytes": len(data),
                "serialize_ms": timed(lambda state=state: serialize_state(state), args.repeats),
                "write_fsync_ms": timed(lambda data=data: discard(write_temp(target, data)), args.repeats),
                "parse_ms": timed(lambda data=data: parse_state(data, target), args.repeats),
                "json_only_ms": timed(lambda data=data: orjson.loads(data), args.repeats),
            })
    print(json.dumps({"state_cost": figures}, indent=2))


if __name__ == "__main__":
    main()
