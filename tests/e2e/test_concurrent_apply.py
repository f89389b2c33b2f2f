"""Real multi-process writers: several `catalog apply` processes race for one catalog.

Every writer is a separate `python -m catalog_cli apply` process talking to the test's private
redis-server, exactly as an operator would run it. Meanwhile a thread reads products.json with
no lock, the way a website build does, and must always find a complete catalog.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from catalog_core.settings import Settings
from tests.conftest import CliRunner
from tests.helpers import cli_env, product, write_jsonl
from worker.atomic import TEMP_SUFFIX, temp_prefix
from worker.backups import list_backups
from worker.catalog_file import parse_catalog, serialize_catalog
from worker.lock import lock_name

pytestmark = pytest.mark.slow

WRITERS = 6
NEW_PER_WRITER = 5
FILLER_PRODUCTS = 2_000  # makes every write a few hundred KB, so reads and writes really overlap
# Text fields of a product; writer i sets field (i + j) % WRITERS of shared product j, so every
# (product, field) pair is written by exactly one writer and every writer touches every shared product.
FIELDS = ("supplier_name", "destination_city", "category", "description_short", "description_long", "booking_policy")
WAIT_FOR_WRITERS_S = 90.0
MIN_READS = 20

assert len(FIELDS) == WRITERS


def shared_id(j: int) -> str:
    return f"SHARED-{j}"


def filler_id(k: int) -> str:
    return f"FILL-{k:05d}"


def new_id(writer: int, k: int) -> str:
    return f"NEW-w{writer}-{k}"


def field_value(writer: int, j: int) -> str:
    return f"set by writer {writer} on shared product {j}"


@dataclass
class WriterPlan:
    """The batch files one writer process applies, in order, and the statuses they must end with."""

    files: list[Path]
    expected_status: list[str]
    expected_created: list[int]


def plan_writer(i: int, folder: Path) -> WriterPlan:
    create = write_jsonl(folder / f"w{i}-create.jsonl",
                         [product(new_id(i, k), category=f"writer {i}") for k in range(NEW_PER_WRITER)])
    patch_shared = write_jsonl(folder / f"w{i}-patch-shared.jsonl", [
        {"product_id": shared_id(j), FIELDS[(i + j) % WRITERS]: field_value(i, j)} for j in range(WRITERS)
    ])
    patch_other = write_jsonl(folder / f"w{i}-patch-other.jsonl", [
        {"product_id": filler_id(i), "pricing": [{"tier_name": f"Writer {i}", "price_aed": 10.0 + i}]},
        {"product_id": shared_id(i), "duration_hours": 1.5 + i},
    ])
    # The same creations again: nothing changes, so no write and no backup.
    return WriterPlan(
        files=[create, patch_shared, patch_other, create],
        expected_status=["applied", "applied", "applied", "unchanged"],
        expected_created=[NEW_PER_WRITER, 0, 0, 0],
    )


@dataclass
class Reader:
    """Reads the catalog with no lock, as fast as it can, until stopped; never raises in its thread."""

    path: Path
    reads: int = 0
    counts: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.path.read_bytes()
                products = orjson.loads(data)
                if not isinstance(products, list):
                    raise ValueError(f"not a list but {type(products).__name__}")
                if not all(isinstance(p, dict) and "product_id" in p for p in products):
                    raise ValueError("an entry is not a product")
                self.counts.append(len(products))
            except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
                self.failures.append(f"read {self.reads}: {type(exc).__name__}: {exc}")
            self.reads += 1
            time.sleep(0.001)  # leave the 2 cores to the writers most of the time


@pytest.fixture
def initial_catalog(catalog_path: Path) -> list[dict[str, Any]]:
    products = [product(filler_id(k)) for k in range(FILLER_PRODUCTS)]
    products += [product(shared_id(j)) for j in range(WRITERS)]
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    catalog_path.write_bytes(serialize_catalog(products))
    return products


def test_six_concurrent_apply_processes_lose_no_update_while_readers_always_see_a_whole_catalog(
    settings: Settings, catalog_path: Path, initial_catalog: list[dict[str, Any]], run_cli: CliRunner,
    tmp_path: Path,
) -> None:
    batch_dir = tmp_path / "batches"
    batch_dir.mkdir()
    plans = [plan_writer(i, batch_dir) for i in range(WRITERS)]

    reader = Reader(catalog_path)
    reader_thread = threading.Thread(target=reader.run, name="catalog-reader", daemon=True)
    reader_thread.start()

    processes: list[subprocess.Popen[str]] = []
    outputs: list[tuple[int, str, str]] = []
    try:
        for plan in plans:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "catalog_cli", "apply", *map(str, plan.files), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(settings),
            ))
        deadline = time.monotonic() + WAIT_FOR_WRITERS_S
        for proc in processes:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append((proc.returncode, stdout, stderr))
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        reader.stop.set()
        reader_thread.join(10)
    assert not reader_thread.is_alive(), "the reader thread did not stop"

    # Every writer succeeded, with the outcome each of its batches should have.
    backups_reported = []
    for i, ((code, stdout, stderr), plan) in enumerate(zip(outputs, plans, strict=True)):
        assert code == 0, f"writer {i} exited {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        results = [orjson.loads(line) for line in stdout.splitlines() if line.strip()]
        assert [r["status"] for r in results] == plan.expected_status, f"writer {i}: {stdout}"
        assert [r["created"] for r in results] == plan.expected_created, f"writer {i}: {stdout}"
        assert all(not r["errors"] for r in results), f"writer {i}: {stdout}"
        backups_reported += [r["backup"] for r in results if r["status"] == "applied"]

    # The catalog is whole, nothing is lost, nothing is duplicated.
    final = parse_catalog(catalog_path.read_bytes(), catalog_path)
    by_id = {p["product_id"]: p for p in final}
    assert len(final) == len(initial_catalog) + WRITERS * NEW_PER_WRITER
    assert [p["product_id"] for p in final[: len(initial_catalog)]] == [p["product_id"] for p in initial_catalog], \
        "existing products must keep their position"
    for i in range(WRITERS):
        for k in range(NEW_PER_WRITER):
            assert by_id[new_id(i, k)]["category"] == f"writer {i}", f"creation {new_id(i, k)} was lost"
        for j in range(WRITERS):
            name = FIELDS[(i + j) % WRITERS]
            assert by_id[shared_id(j)][name] == field_value(i, j), f"writer {i}'s patch of {shared_id(j)}.{name} was lost"
        assert by_id[filler_id(i)]["pricing"] == [
            {"tier_name": f"Writer {i}", "price_aed": 10.0 + i, "currency": "AED",
             "validity_start": None, "validity_end": None}
        ], f"writer {i}'s pricing patch was lost"
        assert by_id[shared_id(i)]["duration_hours"] == 1.5 + i, f"writer {i}'s duration patch was lost"
    assert final[WRITERS:FILLER_PRODUCTS] == initial_catalog[WRITERS:FILLER_PRODUCTS], \
        "products no batch named must be left exactly as they were"

    verify = run_cli("verify", timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # One backup per applied batch (none for the unchanged ones), each a distinct, whole earlier version.
    applied = sum(plan.expected_status.count("applied") for plan in plans)
    backups = list_backups(catalog_path, settings.backup_path)
    assert len(backups) == applied == WRITERS * 3
    assert sorted(str(b.path) for b in backups) == sorted(backups_reported)
    versions = [b.path.read_bytes() for b in backups]
    assert len(set(versions)) == applied, "two applied batches backed up the same version"
    assert catalog_path.read_bytes() not in versions, "the final catalog cannot be a backup already"
    assert versions[0] == serialize_catalog(initial_catalog), "the oldest backup must be the initial catalog"
    for backup, data in zip(backups, versions, strict=True):
        parse_catalog(data, backup.path)  # every backup is a whole catalog

    # No leftovers: no temp file, no lock.
    assert not list(catalog_path.parent.glob(f"{temp_prefix(catalog_path)}*{TEMP_SUFFIX}"))
    assert not redis.Redis.from_url(settings.redis_url).exists("lock:" + lock_name(catalog_path))

    # The lock-free reader only ever saw whole catalogs, never going back in time.
    assert not reader.failures, f"{len(reader.failures)} of {reader.reads} reads failed: {reader.failures[:5]}"
    assert reader.reads >= MIN_READS, f"only {reader.reads} reads happened while the writers ran"
    assert reader.counts == sorted(reader.counts), "a read saw an older catalog than an earlier read"
    assert min(reader.counts) >= len(initial_catalog)
