"""Measure every goal of the write path in one run, beside its reference, and write the table and plots.

    .venv/bin/python -m bench.run                        # 1k, 10k and 100k products: about 5-6 minutes
    .venv/bin/python -m bench.run --sizes 1000,10000 --quick

One private redis-server (devtools/redis_server.py) and real workers (devtools/supervisor.py, the
project's worker command) in a temporary folder; nothing outside it is touched. Writes
``latest.json`` (every figure), ``latest.md`` (the goals table) and the PNG plots into ``--out``.
See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench.commit_cost import floor_commit, measure_commit_cost, timed_ms
from bench.queue_runs import idle_latency, median_ms, project_burst, raw_burst
from bench.report import write_report
from bench.synthetic import catalog_bytes, make_batch, make_catalog
from bench.workers import NOOP_APP, REPO_ROOT, BenchError, running_workers
from catalog_core.errors import CatalogError
from catalog_core.settings import Settings, load_settings
from devtools.redis_server import RedisServer
from devtools.supervisor import worker_command
from producers.api import Producer

QUEUE_PRODUCTS = 10_000  # G1 and G2 are stated on 10k products
BURSTS = 3  # of raw Celery and of the project, taken in turn: the median of each
RAW_REPEAT = 5
RAW_QUEUE = "bench-raw"  # the no-op workers run beside the project's, on a queue of their own


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    workers: list[int]
    repeats: int
    records: int
    single_batches: int
    large_batches: int
    memory_batches: int
    timeout: float
    seed: int
    out: Path
    plots: bool
    profile: bool
    keep: Path | None

    @property
    def queue_products(self) -> int:
        """10k if measured, else the measured size nearest to it (a smoke run's one size)."""
        return min(self.sizes, key=lambda size: abs(size - QUEUE_PRODUCTS))


def positive_list(text: str) -> list[int]:
    try:
        values = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of whole numbers: {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"need whole numbers of at least 1: {text!r}")
    return values


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=positive_list, default=[1_000, 10_000, 100_000],
                        help="catalog sizes in products (default 1000,10000,100000)")
    parser.add_argument("--workers", type=positive_list, default=None, help="worker counts (default 1,2,4)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and shorter bursts (3 repeats, 40 + 20 batches, workers 1,2)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats behind each median (default 7)")
    parser.add_argument("--records", type=int, default=100, help="records of a large batch (default 100)")
    parser.add_argument("--single-batches", type=int, default=None,
                        help=f"a 1-record burst is {RAW_REPEAT} times this many batches (default 200: bursts of "
                             f"{200 * RAW_REPEAT:,})")
    parser.add_argument("--large-batches", type=int, default=None, help="large batches per burst (default 100)")
    parser.add_argument("--memory-batches", type=int, default=None,
                        help="large batches of the memory run at sizes other than the queue's (default 20)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds any one wait may take (default 900)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data (default 1)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results",
                        help="folder of latest.md, latest.json and the plots (default bench/results)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="no PNGs (no matplotlib needed)")
    parser.add_argument("--profile", action="store_true",
                        help="also write profile-SIZE.txt: cProfile of warm applies, where their time goes")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (logs, catalogs)")
    args = parser.parse_args(argv)
    quick = args.quick
    options = Options(
        sizes=args.sizes, workers=args.workers or ([1, 2] if quick else [1, 2, 4]),
        repeats=args.repeats or (3 if quick else 7), records=args.records,
        single_batches=args.single_batches or (40 if quick else 200),
        large_batches=args.large_batches or (20 if quick else 100),
        memory_batches=args.memory_batches or (5 if quick else 20),
        timeout=args.timeout, seed=args.seed, out=args.out, plots=args.plots,
        profile=args.profile, keep=args.keep)
    if min(options.repeats, options.records, options.single_batches, options.large_batches,
           options.memory_batches) < 1 or options.timeout <= 0:
        parser.error("--repeats, --records, the batch counts and --timeout must be positive")
    if options.records > min(options.sizes):
        parser.error("--records must not exceed the smallest size: a batch patches distinct products")
    return options


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def fresh_catalog(folder: Path, data: bytes, redis_url: str, **overrides: Any) -> Settings:
    """Settings of a new catalog in ``folder`` holding ``data``: every run starts from the same file."""
    folder.mkdir(parents=True)
    settings = load_settings(path=folder / "products.json", redis_url=redis_url, **overrides)
    settings.catalog_path.write_bytes(data)
    return settings


def memory_figure(products: int, settings: Settings, workers: int, peak: int, samples: int) -> dict[str, Any]:
    # The catalog grows during the run (new products): the limit is taken at its largest, its end.
    return {"products": products, "catalog_bytes": settings.catalog_path.stat().st_size, "workers": workers,
            "peak_pss_bytes": peak, "samples": samples}


def run_queue(options: Options, workdir: Path, redis_url: str, rng: random.Random,
              figures: dict[str, Any]) -> None:
    """G1 (idle latency, 1 worker), G2 (bursts at each worker count, raw rate beside) and G3 at the queue size.

    The no-op workers and the project's run at the same time, each on a queue of its own, and
    their bursts are taken in turn (raw, project, raw, project, ...): on a shared machine, a
    reference measured minutes away from its figure drifts with whatever else the machine does.
    """
    size = options.queue_products
    template = catalog_bytes(make_catalog(size, rng))
    floor = floor_sampler(orjson.loads(template), workdir / "latency-floor")
    logs = workdir / "logs"
    figures["queue_products"] = size
    for workers in options.workers:
        single = [make_batch(f"w{workers}s{n}", 1, size, rng) for n in range(options.single_batches)]
        large = [make_batch(f"w{workers}l{n}", options.records, size, rng) for n in range(options.large_batches)]
        raw_settings = fresh_catalog(workdir / f"raw-{workers}", b"[]\n", redis_url, queue=RAW_QUEUE)
        settings = fresh_catalog(workdir / f"project-{workers}", template, redis_url)
        raw_producer, producer = Producer(raw_settings), Producer(settings)
        log(f"{workers} worker(s) of the project ({size} products) and {workers} no-op worker(s), bursts in turn")
        with running_workers(raw_settings, workers, f"raw{workers}", logs, app=NOOP_APP) as raw_running, \
                running_workers(settings, workers, f"project{workers}", logs) as running:
            if workers == options.workers[0]:
                batches = [make_batch(f"lat{n}", options.records, size, rng) for n in range(options.repeats + 1)]
                with raw_running.memory.suspended():
                    samples, floors, statuses = idle_latency(producer, batches, "latency", options.timeout, floor)
                figures["latency"] = {"products": size, "workers": workers, "records": options.records,
                                      "median_ms": median_ms(samples), "samples_ms": [round(s, 1) for s in samples],
                                      "floor_median_ms": median_ms(floors),
                                      "floor_samples_ms": [round(s, 1) for s in floors], "statuses": statuses}
                log(f"  idle latency: {figures['latency']['median_ms']} ms "
                    f"(floor between the samples {figures['latency']['floor_median_ms']} ms)")
            # 1-record bursts: the raw burst's number of messages, as long a drain, so that the
            # start of a burst (resume, first lock, first read) weighs the same in both; patches
            # only, the catalog does not grow. 100-record bursts already drain in as many seconds
            # as their raw burst, and 5 times as many would add 10,000 products to the catalog.
            for records, batches, kind, count in ((1, single, "s", len(single) * RAW_REPEAT),
                                                  (options.records, large, "l", len(large))):
                raw, project = [], []
                for n in range(BURSTS):
                    # No-op tasks go fast: the same messages RAW_REPEAT times make a burst of seconds.
                    with running.memory.suspended():
                        raw.append(raw_burst(raw_producer, batches * RAW_REPEAT, raw_running,
                                             f"raw{workers}{kind}{n}", options.timeout))
                    # Each project burst its own batches (the same records again would change
                    # nothing, a cheaper commit).
                    fresh = [make_batch(f"w{workers}{kind}{n}x{b}", records, size, rng) for b in range(count)]
                    with raw_running.memory.suspended():
                        project.append(project_burst(producer, fresh, running, f"project{workers}{kind}{n}",
                                                     options.timeout))
                for bursts in (raw, project):
                    median = sorted(bursts, key=lambda burst: burst.rate)[len(bursts) // 2]
                    figures["bursts"].append({**median.as_dict(), "rates_of_bursts": [round(b.rate, 1) for b in bursts]})
                log(f"  {records}-record batches/s: project {[round(b.rate, 1) for b in project]}, "
                    f"raw Celery {[round(b.rate, 1) for b in raw]}")
        figures["noop_memory"].append({"workers": workers, "peak_pss_bytes": raw_running.memory.peak_per_worker})
        figures["memory"].append(memory_figure(size, settings, workers, running.memory.peak_per_worker,
                                               running.memory.samples))


def floor_sampler(products: list[dict[str, Any]], folder: Path) -> Callable[[], float]:
    """One floor commit of ``products`` (bench.commit_cost), in milliseconds, each time it is called."""
    folder.mkdir(parents=True)
    target = folder / "products.json"
    floor_commit(products, target)  # the file's first write: not a sample
    return lambda: timed_ms(lambda: floor_commit(products, target))[0]


def run_memory(options: Options, size: int, workdir: Path, redis_url: str, rng: random.Random) -> dict[str, Any]:
    """G3 at a size without a throughput run: one worker through a burst of large batches."""
    log(f"memory, 1 worker, {size} products")
    settings = fresh_catalog(workdir / f"memory-{size}", catalog_bytes(make_catalog(size, rng)), redis_url)
    producer = Producer(settings)
    batches = [make_batch(f"m{size}x{n}", options.records, size, rng) for n in range(options.memory_batches)]
    with running_workers(settings, 1, f"memory{size}", workdir / "logs") as running:
        burst = project_burst(producer, batches, running, f"memory{size}", options.timeout)
    log(f"  peak {running.memory.peak_per_worker / 2**20:.0f} MB, {burst.statuses}")
    return memory_figure(size, settings, 1, running.memory.peak_per_worker, running.memory.samples)


def checkout() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        # The previous run's results are no change of the code measured.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "unknown"


def measure(options: Options, workdir: Path) -> dict[str, Any]:
    rng = random.Random(options.seed)
    figures: dict[str, Any] = {
        "meta": {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "checkout": checkout(),
                 "python": platform.python_version(), "cpus": os.cpu_count(),
                 "worker_command": " ".join(worker_command("NAME@%h")[2:]),
                 "options": {k: v for k, v in asdict(options).items() if not isinstance(v, Path | None)}},
        "commit": [], "bursts": [], "memory": [], "noop_memory": [], "latency": None,
    }
    started = time.monotonic()
    with RedisServer(workdir / "redis") as server:
        for size in options.sizes:
            log(f"commit cost at {size} products ({options.repeats} repeats)")
            cost = measure_commit_cost(size, options.records, options.repeats, workdir / f"commit-{size}",
                                       server.url, rng, options.out / f"profile-{size}.txt" if options.profile else None)
            figures["commit"].append(cost.as_dict())
            log(f"  floor {cost.floor.median} ms, seed {cost.seed.median} ms, project {cost.project.median} ms")
        run_queue(options, workdir, server.url, rng, figures)
        for size in options.sizes:
            if size != options.queue_products:
                figures["memory"].append(run_memory(options, size, workdir, server.url, rng))
    figures["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    return figures


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: every worker and the redis-server are stopped


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    if options.plots:
        try:
            import matplotlib  # noqa: F401, PLC0415 - only to fail before minutes of measuring
        except ImportError:
            print("bench: the plots need matplotlib: `make bench` installs it (pip install -e '.[bench]'), "
                  "or pass --no-plots", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    options.out.mkdir(parents=True, exist_ok=True)
    try:
        with ExitStack() as stack:
            if options.keep is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="catalog-bench-")))
            else:
                workdir = options.keep
                shutil.rmtree(workdir, ignore_errors=True)
                workdir.mkdir(parents=True)
            figures = measure(options, workdir)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    except (BenchError, CatalogError) as exc:
        kept = "" if options.keep else "\n(the work folder is gone: run again with --keep DIR to keep its logs)"
        print(f"bench: {exc}{kept}", file=sys.stderr)
        return 1
    (options.out / "latest.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    table = write_report(figures, options.out, plots=options.plots)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
