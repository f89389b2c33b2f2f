"""`celery beat` schedules the backup rotation and a worker runs it: old backups go, recent ones stay."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.e2e.worker_fixtures import Stack, StackFactory, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product
from worker.backups import backup_name

pytestmark = pytest.mark.slow

ROTATION_WAIT_S = 45.0


def test_beat_rotation_removes_backups_past_the_retention_and_keeps_recent_ones(stack_factory: StackFactory) -> None:
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

    deadline = time.monotonic() + ROTATION_WAIT_S
    while old.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if old.exists():
        stack.fail(f"{old.name} still there after {ROTATION_WAIT_S:g}s")

    assert almost_old.exists() and recent.exists() and unrelated.exists()
    assert "catalog.rotate_backups" in beat.log()  # beat sent it ...
    assert "rotated 1 backup(s) older than 7 day(s)" in worker.log()  # ... and the worker ran it
    # Later rotations find nothing more to remove.
    time.sleep(2.5)
    assert sorted(p.name for p in backups.iterdir()) == sorted([almost_old.name, recent.name, unrelated.name])
