"""What one 100-record commit costs at a catalog size, three ways, in this process (G4):

- ``floor``: what no design can beat, serializing the catalog already in memory with orjson
  (indent 2) plus one durable atomic write (temp file, write, fsync, rename, folder fsync);
- ``seed``: the cycle of the system this project replaced: read and parse with the stdlib's
  ``json``, merge the batch, copy the backup (``shutil.copy2``), ``json.dump(indent=2)`` into a
  temp file, fsync, rename, folder fsync;
- ``project``: ``CatalogStore(settings).apply(records, batch_id)`` on a warm store, the same
  object applying consecutive batches, so whatever it keeps between batches is used as a worker
  would use it.

The floor and the seed cycle are written here, with nothing from ``worker/``: a reference
never comes from the code under test.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.synthetic import catalog_bytes, make_batch, make_catalog
from catalog_core.settings import load_settings


@dataclass(frozen=True)
class Timing:
    """Milliseconds over repeats."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        return cls(round(statistics.median(samples), 2), round(min(samples), 2), round(max(samples), 2))


@dataclass(frozen=True)
class CommitCost:
    products: int
    catalog_bytes: int
    floor: Timing
    seed: Timing
    project: Timing
    project_statuses: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def durable_write(path: Path, data: bytes) -> None:
    """Temp file beside ``path``, write, fsync, rename over ``path``, fsync the folder."""
    temp = path.with_name(f".{path.name}.bench-tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def floor_commit(products: list[dict[str, Any]], target: Path) -> None:
    durable_write(target, orjson.dumps(products, option=orjson.OPT_INDENT_2) + b"\n")


def seed_cycle(catalog: Path, backups: Path, records: list[dict[str, Any]], number: int) -> None:
    """The replaced system's cycle: stdlib parse, merge-upsert, backup copy, stdlib dump, atomic write."""
    with catalog.open(encoding="utf-8") as source:
        products: list[dict[str, Any]] = json.load(source)
    by_id = {product["product_id"]: product for product in products}
    for record in records:
        existing = by_id.get(record["product_id"])
        if existing is None:
            products.append(record)
            by_id[record["product_id"]] = record
        else:
            existing.update(record)
    shutil.copy2(catalog, backups / f"products_{number:04d}.json")
    temp = catalog.with_name(f".{catalog.name}.seed-tmp")
    with temp.open("w", encoding="utf-8") as out:
        json.dump(products, out, indent=2, ensure_ascii=False)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, catalog)
    sync_folder(catalog.parent)


def timed_ms(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return (time.perf_counter() - started) * 1000, value


def measure_commit_cost(products: int, records: int, repeats: int, workdir: Path, redis_url: str,
                        rng: random.Random, profile_to: Path | None = None) -> CommitCost:
    """Floor, seed cycle and project apply at ``products`` products, each the median of ``repeats``."""
    catalog = make_catalog(products, rng)
    data = catalog_bytes(catalog)

    floor_dir = workdir / "floor"
    floor_dir.mkdir(parents=True)
    floor_commit(catalog, floor_dir / "products.json")  # first write of the file: not counted
    floor = [timed_ms(lambda: floor_commit(catalog, floor_dir / "products.json"))[0] for _ in range(repeats)]
    del catalog

    seed_catalog = workdir / "seed" / "products.json"
    (workdir / "seed" / "backups").mkdir(parents=True)
    seed_catalog.write_bytes(data)
    seed = []
    for number in range(repeats):
        batch = make_batch(f"seed{number}", records, products, rng)
        seed.append(timed_ms(lambda: seed_cycle(seed_catalog, seed_catalog.parent / "backups", batch, number))[0])
    shutil.rmtree(workdir / "seed")

    project, statuses = measure_project_apply(data, products, records, repeats, workdir / "project", redis_url, rng,
                                              profile_to)
    shutil.rmtree(workdir / "project")
    return CommitCost(products, len(data), Timing.of(floor), Timing.of(seed), Timing.of(project), statuses)


def measure_project_apply(data: bytes, products: int, records: int, repeats: int, folder: Path, redis_url: str,
                          rng: random.Random, profile_to: Path | None) -> tuple[list[float], dict[str, int]]:
    # Imported here: the harness must still start (and say what broke) if the store does not import.
    from worker.store import CatalogStore

    settings = load_settings(path=folder / "products.json", redis_url=redis_url)
    folder.mkdir(parents=True)
    settings.catalog_path.write_bytes(data)
    store = CatalogStore(settings)
    statuses: dict[str, int] = {}
    samples = []
    for number in range(repeats + 1):
        batch = make_batch(f"apply{products}x{number}", records, products, rng)
        ms, result = timed_ms(lambda: store.apply(batch, f"bench-apply-{products}-{number}"))
        if number == 0:
            continue  # warm-up: the first batch fills whatever the store keeps; not counted
        statuses[result.status.value] = statuses.get(result.status.value, 0) + 1
        samples.append(ms)
    if profile_to is not None:
        profile_applies(store, products, records, repeats, rng, profile_to)
    return samples, statuses


def profile_applies(store: Any, products: int, records: int, repeats: int, rng: random.Random, target: Path) -> None:
    """Where a warm apply's time goes: cProfile over ``repeats`` more applies (after the timed ones,
    which ran unprofiled), the functions with the most cumulative time first."""
    batches = [make_batch(f"prof{products}x{n}", records, products, rng) for n in range(repeats)]
    profiler = cProfile.Profile()
    profiler.enable()
    for number, batch in enumerate(batches):
        store.apply(batch, f"bench-profile-{products}-{number}")
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    target.write_text(f"{repeats} warm applies of {records}-record batches, {products} products\n{text.getvalue()}",
                      encoding="utf-8")
