"""A writer killed with SIGKILL in the middle of writing the catalog.

The kill must land while the new catalog is still a hidden temp file next to products.json
(see worker/atomic.py): products.json must be untouched, byte for byte. The dead writer still
holds the Redis lock, so the next writer has to wait for it to expire, then clean up the temp
file the dead one left, and apply its own batch.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from catalog_core.settings import Settings
from schemas import Product
from tests.helpers import cli_env, product, write_jsonl
from worker.atomic import TEMP_SUFFIX, temp_prefix
from worker.backups import list_backups
from worker.catalog_file import parse_catalog, serialize_catalog
from worker.lock import lock_name

pytestmark = pytest.mark.slow

# Products in the catalog, per attempt: writing ~19 MB and fsyncing it keeps the temp file
# around for tens of milliseconds; later attempts use a bigger catalog for a wider window.
CATALOG_SIZES = (60_000, 60_000, 90_000, 90_000, 120_000)
LOCK_EXPIRE_S = 3
ATTEMPT_TIMEOUT_S = 40.0
FIRST_PATCH = {"product_id": "P000017", "category": "written by the writer that gets killed"}
SECOND_PATCH = {"product_id": "P000042", "description_short": "written by the writer that comes next"}


def big_catalog(size: int) -> list[dict[str, Any]]:
    return [product(f"P{i:06d}", description_short=f"A product of the big catalog, number {i}.") for i in range(size)]


def temp_files(catalog: Path) -> list[str]:
    prefix = temp_prefix(catalog)
    return [name for name in os.listdir(catalog.parent) if name.startswith(prefix) and name.endswith(TEMP_SUFFIX)]


@dataclass
class Attempt:
    """What happened when we tried to kill a writer while its temp file existed."""

    size: int
    landed: bool
    reason: str
    killed_at: float = 0.0
    lock_ttl_ms: int = -2  # PTTL of the lock key right after the kill: -2 = no key
    lock_ttl_read_at: float = 0.0
    temp_left: tuple[str, ...] = ()


def kill_writer_while_temp_file_exists(
    settings: Settings, batch: Path, client: redis.Redis, lock_key: str, size: int
) -> Attempt:
    """Start `catalog apply`, poll the folder as fast as we can, SIGKILL it the moment a temp file shows."""
    catalog = settings.catalog_path
    env = cli_env(settings, CATALOG_LOCK_EXPIRE=str(LOCK_EXPIRE_S))
    proc = subprocess.Popen([sys.executable, "-m", "catalog_cli", "apply", str(batch), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + ATTEMPT_TIMEOUT_S
    killed_at = 0.0
    try:
        while True:
            if temp_files(catalog):
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = time.monotonic()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        ttl = int(client.pttl(lock_key))
        ttl_read_at = time.monotonic()
    finally:
        if proc.poll() is None and not killed_at:
            proc.kill()
        stdout, stderr = proc.communicate(timeout=30)
    if not killed_at:
        output = (stdout + stderr).decode(errors="replace")[-1500:]
        return Attempt(size, False, f"exit {proc.returncode} before any temp file was seen: {output}")
    left = tuple(temp_files(catalog))
    if proc.returncode != -signal.SIGKILL:
        return Attempt(size, False, f"the writer was not killed but exited {proc.returncode}")
    if not left:
        return Attempt(size, False, "the kill arrived after the temp file had already been renamed")
    return Attempt(size, True, "killed while its temp file existed", killed_at, ttl, ttl_read_at, left)


def reset(settings: Settings, data: bytes, client: redis.Redis, lock_key: str) -> None:
    """Undo whatever a missed attempt did, so the next one starts clean."""
    catalog = settings.catalog_path
    for name in temp_files(catalog):
        (catalog.parent / name).unlink()
    shutil.rmtree(settings.backup_path, ignore_errors=True)
    catalog.write_bytes(data)
    client.delete(lock_key)


@pytest.mark.timeout(240)
def test_a_writer_killed_mid_write_leaves_the_old_catalog_and_the_next_writer_waits_cleans_up_and_applies(
    settings: Settings, catalog_path: Path, tmp_path: Path,
) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    lock_key = "lock:" + lock_name(catalog_path)
    first = write_jsonl(tmp_path / "first.jsonl", [FIRST_PATCH])
    second = write_jsonl(tmp_path / "second.jsonl", [SECOND_PATCH])
    catalog_path.parent.mkdir(parents=True, exist_ok=True)

    attempts: list[Attempt] = []
    for size in CATALOG_SIZES:
        old_products = big_catalog(size)
        old = serialize_catalog(old_products)
        reset(settings, old, client, lock_key)
        attempt = kill_writer_while_temp_file_exists(settings, first, client, lock_key, size)
        attempts.append(attempt)
        if attempt.landed:
            break
    else:
        pytest.fail("no SIGKILL landed while the writer's temp file existed, in "
                    f"{len(attempts)} attempts: " + "; ".join(f"{a.size:,} products: {a.reason}" for a in attempts))

    # The dead writer held the lock when it died, and products.json is the old catalog, byte for byte.
    assert attempt.lock_ttl_ms > 0, f"the lock key {lock_key} was not held at kill time (PTTL {attempt.lock_ttl_ms})"
    current = catalog_path.read_bytes()
    assert current == old, "a writer killed before its rename changed products.json"
    assert len(parse_catalog(current, catalog_path)) == size

    # The next writer waits for the dead writer's lock to expire, removes the stale temp file, applies.
    started = time.monotonic()
    second_run = subprocess.run(
        [sys.executable, "-m", "catalog_cli", "apply", str(second), "--json"],
        capture_output=True, text=True, timeout=60, env=cli_env(settings, CATALOG_LOCK_EXPIRE=str(LOCK_EXPIRE_S)),
    )
    finished = time.monotonic()
    assert second_run.returncode == 0, second_run.stdout + second_run.stderr
    assert orjson.loads(second_run.stdout.splitlines()[-1])["status"] == "applied", second_run.stdout

    # The lock key lived lock_ttl_ms more after we read its PTTL; the second writer cannot have
    # finished before (a little slack for clock reads). The renewal thread (every 2 s of a 3 s
    # expiry) leaves between ~1 and 3 s; typically ~2.5 s, since the kill comes soon after taking it.
    lock_free_at = attempt.lock_ttl_read_at + attempt.lock_ttl_ms / 1000
    assert finished >= lock_free_at - 0.05, (
        f"the second writer finished {lock_free_at - finished:.2f}s before the dead writer's lock expired"
    )
    assert finished - attempt.killed_at >= 0.9, "the second writer did not wait for the dead writer's lock"
    assert finished - started < 0.75 * settings.lock_timeout, (
        f"the second writer took {finished - started:.1f}s, close to the {settings.lock_timeout:g}s lock timeout"
    )

    assert temp_files(catalog_path) == [], "the stale temp file was not removed"
    for name in attempt.temp_left:
        assert name in second_run.stderr, f"the second writer did not report removing {name}:\n{second_run.stderr}"
    assert "left by a writer that crashed" in second_run.stderr

    # Exactly the second patch is in, the killed writer's patch is not, nothing else moved.
    expected = list(old_products)
    index = int(SECOND_PATCH["product_id"][1:])
    expected[index] = Product.model_validate({**old_products[index], **SECOND_PATCH}).to_record()
    final = parse_catalog(catalog_path.read_bytes(), catalog_path)
    killed_index = int(FIRST_PATCH["product_id"][1:])
    assert final[killed_index] == old_products[killed_index], "the killed writer's patch must not appear"
    assert final[index]["description_short"] == SECOND_PATCH["description_short"]
    assert catalog_path.read_bytes() == serialize_catalog(expected), "products no batch named must not change"

    # Backups: the second writer's is the old catalog. If the kill came after the dead writer's own
    # backup (a sub-millisecond window), that one is the old catalog too.
    backups = list_backups(catalog_path, settings.backup_path)
    assert 1 <= len(backups) <= 2, [b.name for b in backups]
    assert all(b.path.read_bytes() == old for b in backups)
    assert not client.exists(lock_key), "the second writer did not release the lock"
