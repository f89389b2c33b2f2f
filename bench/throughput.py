#!/usr/bin/env python
"""Throughput of the whole queue path: Producer -> Redis -> W real `celery worker` processes -> catalog.

Starts its own private redis-server (devtools.redis_server.RedisServer) in a temp folder,
writes a synthetic catalog of C products, starts W workers exactly as ``catalog dev`` does
(``celery -A worker worker --loglevel=INFO --concurrency=1 --pool=prefork``), waits until each
answers a ping, then enqueues N batches of M records (80 % patches of existing products, 20 %
new products) through ``producers.api.Producer`` as fast as it can and polls every batch until
it has its final result.

Prints one JSON object:
- ``batches_per_s``, ``records_per_s``: N (and N*M) over the time from the first enqueue to the
  completion of the last batch;
- ``latency_s``: p50/p95/max of enqueue -> completion per batch. Completion is the result's
  ``date_done`` written by the worker (same machine, same clock), else the moment polling saw
  the result;
- ``peak_worker_rss_mb``: the highest sum, over all workers, of the RSS of the worker's main
  process and its children (the prefork pool), sampled every 0.2 s during the run.

    .venv/bin/python bench/throughput.py --batches 40 --records 100 --products 10000 --workers 2

Run it on a quiet machine: other processes running at the same time change the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]

from devtools.supervisor import Supervisor, wait_for_workers, worker_command
from devtools.redis_server import RedisServer
from catalog_core.settings import Settings, load_settings
from producers.api import BatchHandle, Producer
from worker.catalog_file import serialize_catalog

from synthetic import make_product  # bench/synthetic.py: scripts run from bench/, which is on sys.path

NEW_SHARE = 0.2
WORKER_START_TIMEOUT_S = 60.0


def make_batch(number: int, records: int, products: int, rng: random.Random) -> list[dict[str, Any]]:
    """``records`` records: patches of distinct existing products, and new products of this batch."""
    new = max(1, round(records * NEW_SHARE)) if records > 1 else 0
    patched = rng.sample(range(products), min(records - new, products))
    batch: list[dict[str, Any]] = [
        {"product_id": f"P{i:06d}", "pricing": [{"tier_name": "Adult", "price_aed": float(rng.randint(50, 1500))}],
         "description_short": f"updated by batch {number}"}
        for i in patched
    ]
    batch += [make_product(f"NEW-{number:05d}-{k:04d}", rng) for k in range(records - len(batch))]
    rng.shuffle(batch)
    return batch


def start_workers(settings: Settings, count: int, log_dir: Path) -> Supervisor:
    """``count`` workers (one pool process each) under the one supervisor, answering pings."""
    supervisor = Supervisor(log_dir, {**os.environ, **settings.to_env()}, cwd=REPO_ROOT)
    workers = {f"bench{n}": supervisor.start(f"bench{n}", worker_command(f"bench{n}@%h", "--pool=prefork"))
               for n in range(1, count + 1)}
    wait_for_workers(Producer(settings).app, workers, WORKER_START_TIMEOUT_S)
    return supervisor


class RssSampler:
    """Samples the summed RSS of the workers (main process + children) in a thread; keeps the peak."""

    def __init__(self, pids: list[int], every: float = 0.2) -> None:
        self.pids = pids
        self.every = every
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                main = psutil.Process(pid)
                family = [main, *main.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process in family:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.sample())


def completion_time(handle: BatchHandle, producer: Producer, seen_at: float,
                    wall_minus_mono: float) -> tuple[float, str]:
    """Monotonic time the worker finished the batch: its result's date_done, else when polling saw it."""
    done = producer.results_app.AsyncResult(handle.batch_id).date_done
    if isinstance(done, str):
        done = dt.datetime.fromisoformat(done)
    if isinstance(done, dt.datetime):
        if done.tzinfo is None:
            done = done.replace(tzinfo=dt.UTC)
        return min(done.timestamp() - wall_minus_mono, seen_at), "date_done"
    return seen_at, "polled"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(fraction * 100) - 1]


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="catalog-throughput-") as temp:
        root = Path(temp)
        server = RedisServer(root / "redis").start()
        supervisor: Supervisor | None = None
        try:
            settings = load_settings(path=root / "catalog" / "products.json", redis_url=server.url)
            settings.catalog_path.parent.mkdir(parents=True)
            settings.catalog_path.write_bytes(
                serialize_catalog([make_product(f"P{i:06d}", rng) for i in range(args.products)]))
            catalog_bytes = settings.catalog_path.stat().st_size
            batches = [make_batch(n, args.records, args.products, rng) for n in range(args.batches)]

            producer = Producer(settings)
            supervisor = start_workers(settings, args.workers, root)

            wall_minus_mono = time.time() - time.monotonic()
            with RssSampler([w.pid for w in supervisor.children.values()]) as rss:
                started = time.monotonic()
                submitted: list[tuple[BatchHandle, float]] = []
                for n, batch in enumerate(batches):
                    submitted.append((producer.submit(batch, batch_id=f"bench-{n:05d}", source="bench"),
                                      time.monotonic()))
                enqueued = time.monotonic()
                finished: dict[str, tuple[Any, float]] = {}
                deadline = started + args.timeout
                while len(finished) < len(submitted) and time.monotonic() < deadline:
                    for handle, _ in submitted:
                        if handle.batch_id not in finished:
                            state = handle.state()
                            if state.final:
                                finished[handle.batch_id] = (state, time.monotonic())
                    time.sleep(0.05)
            if len(finished) < len(submitted):
                raise SystemExit(f"only {len(finished)} of {len(submitted)} batches done after {args.timeout:g}s")

            latencies, completions, statuses, sources = [], [], Counter(), Counter()
            for handle, sent_at in submitted:
                state, seen_at = finished[handle.batch_id]
                statuses[state.result.status.value if state.result else state.state] += 1
                completed, source = completion_time(handle, producer, seen_at, wall_minus_mono)
                sources[source] += 1
                completions.append(completed)
                latencies.append(max(completed - sent_at, 0.0))
            elapsed = max(completions) - started
            return {
                "batches": args.batches,
                "records_per_batch": args.records,
                "catalog_products": args.products,
                "catalog_mb": round(catalog_bytes / 1e6, 2),
                "workers": args.workers,
                "statuses": dict(statuses),
                "enqueue_s": round(enqueued - started, 3),
                "elapsed_s": round(elapsed, 3),
                "batches_per_s": round(args.batches / elapsed, 2),
                "records_per_s": round(args.batches * args.records / elapsed, 1),
                "latency_s": {"p50": round(percentile(latencies, 0.50), 3),
                              "p95": round(percentile(latencies, 0.95), 3),
                              "max": round(max(latencies), 3)},
                "completion_from": dict(sources),
                "peak_worker_rss_mb": round(rss.peak / 2**20, 1),
                "rss_samples": rss.samples,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        finally:
            if supervisor is not None:
                supervisor.stop_all()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="number of batches N (default 40)")
    parser.add_argument("--records", type=int, default=100, help="records per batch M (default 100)")
    parser.add_argument("--products", type=int, default=10_000, help="products in the catalog C (default 10000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes W (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for all batches")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the synthetic data")
    args = parser.parse_args()
    if min(args.batches, args.records, args.products, args.workers) < 1:
        parser.error("--batches, --records, --products and --workers must be at least 1")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
