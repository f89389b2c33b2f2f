"""A paused writer whose commit lands inside another writer's window is read, never erased.

Writer A passes its last check, then stops (SIGSTOP) before its commit rename, past its lock's
expiry. Writer B takes the lock and reads the state, then stops. A resumes and commits. B
resumes: the state file it read is no longer the one on disk, so it must start over and keep
A's change, whatever the fences say. The pauses are placed by tests/e2e/paused_writer.py, so
the interleaving is the same on every run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from catalog_core.settings import Settings
from tests.helpers import cli_env, product, write_jsonl
from worker.lock import lock_name
from worker.state import read_state, state_path
from worker.store import CatalogStore

pytestmark = pytest.mark.slow

STEP_TIMEOUT_S = 30


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wait_until(condition, what: str, timeout: float = STEP_TIMEOUT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def paused_apply(settings: Settings, point: str, batch: Path, lock_expire: int) -> subprocess.Popen[str]:
    env = cli_env(settings, CATALOG_LOCK_EXPIRE=str(lock_expire), CATALOG_LOCK_TIMEOUT="20")
    return subprocess.Popen([sys.executable, "-m", "tests.e2e.paused_writer", point, "apply", "--json", str(batch)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_paused_writer_that_resumes_inside_another_writers_read_is_never_acknowledged_and_erased(
    settings: Settings, tmp_path: Path
) -> None:
    CatalogStore(settings).apply([product("SEED")], "seed")
    client = redis.Redis.from_url(settings.redis_url)
    lock_key = f"lock:{lock_name(settings.catalog_path)}"
    a = paused_apply(settings, "worker.commit:_link_previous:before",
                     write_jsonl(tmp_path / "a.jsonl", [product("FROM-A")]), lock_expire=2)
    b = None
    try:
        wait_until(lambda: process_state(a.pid) == "T", "writer A stops just before its commit rename")
        wait_until(lambda: not client.exists(lock_key), "writer A's lock expires")
        # B keeps its lock for 30 s: its own pause must not be what saves it.
        b = paused_apply(settings, "worker.recovery:read_state_file:after",
                         write_jsonl(tmp_path / "b.jsonl", [product("FROM-B")]), lock_expire=30)
        wait_until(lambda: process_state(b.pid) == "T", "writer B stops right after reading the state")
        a.send_signal(signal.SIGCONT)
        a_out, a_err = a.communicate(timeout=STEP_TIMEOUT_S)
        b.send_signal(signal.SIGCONT)
        b_out, b_err = b.communicate(timeout=STEP_TIMEOUT_S)
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
    assert b.returncode == 0, b_err
    assert json.loads(b_out)["status"] == "applied"
    ids = [p["product_id"] for p in json.loads(settings.catalog_path.read_bytes())]
    state = read_state(state_path(settings.catalog_path))
    assert state is not None
    a_applied = a.returncode == 0 and json.loads(a_out)["status"] == "applied"
    # A writer that says "applied" must find its batch in the catalog and the ledger; one that
    # lost its lock may instead fail (exit 3, nothing of it written) and be retried.
    if a_applied:
        assert ids == ["SEED", "FROM-A", "FROM-B"], (ids, a_err, b_err)
        assert len(state.ledger) == 3, (state.ledger, a_err, b_err)
    else:
        assert a.returncode == 3, a_err
        assert ids == ["SEED", "FROM-B"] and len(state.ledger) == 2, (ids, state.ledger)
