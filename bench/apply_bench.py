#!/usr/bin/env python
"""Benchmark of applying one batch to a catalog of C products, in-process and through the CLI.

Starts its own private redis-server (devtools.redis_server.RedisServer) in a temp folder,
builds a synthetic catalog shaped like the real one (~1.2 KB of indented JSON per product),
then, for each repeat, applies a fresh batch (half patches of existing products, half new ones):

- ``store_apply``: ``CatalogStore.apply`` in this process (lock, read, merge, write, backup);
- ``cli_apply``: the whole ``python -m catalog_cli apply FILE --json`` subprocess, wall time;

and times the pieces on their own, so one can see where the time goes:
``cli_startup`` (interpreter + imports of the CLI), ``lock`` (acquire + release on Redis),
``read`` (bytes from disk), ``parse`` (orjson + shape checks), ``merge``, ``serialize``,
``atomic_write`` (temp file, fsync, rename, folder fsync) and ``backup`` (hard link).

Prints one JSON object: every figure as {"median", "min", "max"} in milliseconds.

    .venv/bin/python bench/apply_bench.py --products 10000 --records 100 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catalog_core.redis_client import connect
from devtools.redis_server import RedisServer
from catalog_core.settings import Settings, load_settings
from worker.atomic import atomic_write
from worker.backups import take_backup
from worker.catalog_file import parse_catalog, read_catalog, serialize_catalog
from worker.lock import catalog_lock
from worker.merge import merge_batch
from worker.store import CatalogStore

from synthetic import make_product  # bench/synthetic.py: scripts run from bench/, which is on sys.path

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_batch(existing_ids: list[str], records: int, run: str, rng: random.Random) -> list[dict[str, Any]]:
    """Half patches of existing products (new price, new text), half complete new products."""
    patches = records // 2
    batch: list[dict[str, Any]] = [
        {"product_id": product_id,
         "description_short": f"Updated by benchmark run {run}.",
         "pricing": [{"tier_name": "Adult", "price_aed": float(rng.randint(50, 1500)), "currency": "AED"}]}
        for product_id in rng.sample(existing_ids, patches)
    ]
    batch += [make_product(f"BENCH-{run}-{k:05d}", rng) for k in range(records - patches)]
    return batch


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return (time.perf_counter() - started) * 1000, value


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 2), "min": round(min(samples), 2),
            "max": round(max(samples), 2)}


def cli_env(settings: Settings) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CATALOG_")}
    return {**env, **settings.to_env()}


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "catalog_cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"catalog {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def bench(products: int, records: int, repeats: int, workdir: Path, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with RedisServer(workdir / "redis") as server:
        catalog = workdir / "catalog" / "products.json"
        settings = load_settings(path=catalog, redis_url=server.url, lock_expire=30, lock_timeout=60)
        ids = [f"P{i:07d}" for i in range(products)]
        started = time.perf_counter()
        atomic_write(catalog, serialize_catalog([make_product(pid, rng) for pid in ids]))
        build_ms = (time.perf_counter() - started) * 1000
        initial_bytes = catalog.stat().st_size

        store = CatalogStore(settings)
        env = cli_env(settings)
        client = connect(server.url)
        scratch = workdir / "scratch" / "products.json"
        scratch_backups = workdir / "scratch" / "backups"
        samples: dict[str, list[float]] = {name: [] for name in (
            "store_apply", "cli_apply", "cli_startup", "lock", "read", "parse", "merge", "serialize",
            "atomic_write", "backup")}

        # Warm-up, not counted: first-use costs (pydantic schema build, page cache, Redis scripts).
        store.apply(make_batch(ids, records, "warmup", rng), "bench-warmup")

        for repeat in range(repeats):
            # (a) the whole store apply, in process
            batch = make_batch(ids, records, f"s{repeat}-{uuid.uuid4().hex[:6]}", rng)
            ms, result = timed(lambda batch=batch: store.apply(batch, f"bench-store-{repeat}"))
            assert result.status == "applied" and result.updated + result.created == records, result
            samples["store_apply"].append(ms)

            # (b) the whole CLI apply, as a subprocess
            batch_file = workdir / f"batch-{repeat}.json"
            batch_file.write_text(json.dumps(make_batch(ids, records, f"c{repeat}-{uuid.uuid4().hex[:6]}", rng)))
            ms, done = timed(lambda batch_file=batch_file: run_cli(["apply", str(batch_file), "--json"], env))
            assert json.loads(done.stdout.splitlines()[-1])["status"] == "applied", done.stdout
            samples["cli_apply"].append(ms)

            # the pieces
            ms, _ = timed(lambda: subprocess.run([sys.executable, "-c", "import catalog_cli.main"], env=env,
                                                 cwd=REPO_ROOT, check=True, timeout=120))
            samples["cli_startup"].append(ms)

            def lock_round_trip() -> None:
                with catalog_lock(client, catalog, settings.lock_expire, settings.lock_timeout):
                    pass

            samples["lock"].append(timed(lock_round_trip)[0])
            ms, data = timed(catalog.read_bytes)
            samples["read"].append(ms)
            ms, current = timed(lambda data=data: parse_catalog(data, catalog))
            samples["parse"].append(ms)
            batch = make_batch(ids, records, f"p{repeat}", rng)
            ms, outcome = timed(lambda current=current, batch=batch: merge_batch(current, batch))
            assert not outcome.errors, outcome.errors[:3]
            samples["merge"].append(ms)
            ms, new_data = timed(lambda outcome=outcome: serialize_catalog(outcome.products))
            samples["serialize"].append(ms)
            # written to a scratch catalog beside the real one (same file system), not the real one
            ms, _ = timed(lambda new_data=new_data: atomic_write(scratch, new_data))
            samples["atomic_write"].append(ms)
            samples["backup"].append(timed(lambda: take_backup(scratch, scratch_backups))[0])

        final = read_catalog(catalog)
        return {
            "products": products,
            "records_per_batch": records,
            "repeats": repeats,
            "catalog_bytes_initial": initial_bytes,
            "catalog_bytes_final": catalog.stat().st_size,
            "catalog_products_final": len(final),
            "build_catalog_ms": round(build_ms, 2),
            "timings_ms": {name: summary(values) for name, values in samples.items()},
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=10_000, help="products in the catalog (default 10000)")
    parser.add_argument("--records", type=int, default=100, help="records per batch, half patches (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each measurement (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the synthetic data")
    args = parser.parse_args()
    if args.products < args.records // 2 or args.records < 2 or args.repeats < 1:
        parser.error("need --records >= 2, --repeats >= 1 and --products >= records/2")
    with tempfile.TemporaryDirectory(prefix="catalog-bench-") as folder:
        figures = bench(args.products, args.records, args.repeats, Path(folder), args.seed)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
