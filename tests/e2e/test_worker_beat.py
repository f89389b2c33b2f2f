"""`celery beat` schedules the backup rotation and a worker runs it: old backups go, older ones are compressed,
recent ones stay."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.e2e.worker_fixtures import Stack, StackFactory, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product
from worker.backups import backup_name

pytestmark = pytest.mark.slow

ROTATION_WAIT_S = 45.0


def test_beat_rotation_removes_backups_past_the_retention_compresses_old_ones_and_keeps_recent_ones(stack_factory: StackFactory) -> None:
    stack: Stack = stack_factory(rotate_every=1, backup_retention_days=7)
    stack.seed([product("REAL-1")])
    backups = stack.settings.backup_path
    backups.mkdir(parents=True)
    old = backups / "products_20200101_000000_000000.json"
    old.write_bytes(stack.settings.catalog_path.read_bytes())
    almost_old = backups / backup_name(stack.settings.catalog_path, dt.datetime.now(dt.UTC) - dt.timedelta(days=6))
    almost_old.write_bytes(old.read_bytes())
    recent = backups / backup_name(stack.settings.catalog_path, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    recent.write_bytes(old.read_bytes())
    unrelated = backups / "notes.json"  # not a backup name: never touched
    unrelated.write_text("{}")

    beat = stack.start_beat()
    worker = stack.start_worker(1)

    compressed = almost_old.with_name(almost_old.name + ".gz")
    deadline = time.monotonic() + ROTATION_WAIT_S
    while (old.exists() or not compressed.exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if old.exists() or not compressed.exists():
        stack.fail(f"{old.name} still there, or {almost_old.name} not compressed, after {ROTATION_WAIT_S:g}s")

    assert recent.exists() and unrelated.exists()
    assert "catalog.rotate_backups" in beat.log()  # beat sent it ...
    # ... and the worker ran it: one line per pass, what it kept, compressed and deleted.
    assert f"compressed 1 ({compressed.name}); deleted 1 ({old.name})" in worker.log()
    # Later rotations find nothing more to do: the day's backup stays, compressed, the recent one plain.
    time.sleep(2.5)
    assert sorted(p.name for p in backups.iterdir()) == sorted([compressed.name, recent.name, unrelated.name])
