"""A worker killed with SIGKILL in the middle of a batch loses nothing: the batch is redelivered.

The batch is made to block deterministically: the test holds the catalog lock itself, so the
worker's task is running and waiting for the lock when the worker (main process and prefork
child, the whole process group) is killed. Redis has no real acknowledgements: kombu keeps the
delivered message aside and puts it back on the queue once it is older than the visibility
timeout; a second worker must then apply it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from catalog_core.celery_config import UNACKED_MUTEX_EXPIRE_S
from tests.e2e.worker_fixtures import Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product
from worker.lock import lock_name

pytestmark = pytest.mark.slow


def wait_for_state(stack: Stack, batch_id: str, wanted: str, timeout: float) -> None:
    handle = stack.producer.handle(batch_id)
    deadline = time.monotonic() + timeout
    state = handle.state()
    while state.state != wanted and time.monotonic() < deadline:
        time.sleep(0.05)
        state = handle.state()
    if state.state != wanted:
        stack.fail(f"batch {batch_id} is {state.state}, not {wanted}, after {timeout:g}s")


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_batch_whose_worker_is_killed_mid_batch_is_redelivered_and_applied_by_another_worker(
    stack: Stack, pool: str,
) -> None:
    settings = stack.settings
    stack.seed([product("SEED-1")])
    seeded = settings.catalog_path.read_bytes()
    first = stack.start_worker(1, pool=pool)

    # Hold the catalog lock as another writer would, for longer than the test needs it.
    client = stack.redis()
    lock_key = "lock:" + lock_name(settings.catalog_path)
    assert client.set(lock_key, b"held-by-the-test", nx=True, ex=120)

    handle = stack.producer.submit([product("REDELIVERED-1"), {"product_id": "SEED-1", "category": "Redelivered"}],
                                   batch_id="redelivered-1")
    # The task runs and waits for the lock (up to lock_timeout, 5 s, before it would retry).
    wait_for_state(stack, handle.batch_id, "running", timeout=30)
    assert "Task catalog.ingest_batch[redelivered-1] received" in first.log()

    os.killpg(first.pid, signal.SIGKILL)  # the worker and any prefork child, no chance to clean up
    killed_at = time.monotonic()
    first.process.wait(10)

    client.delete(lock_key)
    # The dead worker's batch stays "running", and the catalog untouched, until it is redelivered.
    assert handle.state().state == "running"
    assert settings.catalog_path.read_bytes() == seeded
    second = stack.start_worker(2, pool="prefork")

    # A sweep after the visibility timeout puts it back; if the killed worker died inside a sweep,
    # the sweep's mutex first expires (the test below takes that case on purpose).
    bound = settings.visibility_timeout + UNACKED_MUTEX_EXPIRE_S + settings.restore_interval * 3 + 15
    state = stack.wait(handle, timeout=bound + 15)
    delay = time.monotonic() - killed_at
    print(f"redelivery delay: {delay:.1f}s (killed worker's pool: {pool})")

    assert state.result is not None and state.result.status == "applied", state
    assert (state.result.created, state.result.updated) == (1, 1)
    assert "Task catalog.ingest_batch[redelivered-1] received" in second.log()
    assert "redelivered-1" in second.log() and "applied" in second.log()
    catalog = stack.catalog()
    assert list(catalog) == ["SEED-1", "REDELIVERED-1"]
    assert catalog["SEED-1"]["category"] == "Redelivered"
    # Not before the visibility timeout: the message was delivered at most lock_timeout before the kill ...
    assert delay >= settings.visibility_timeout - settings.lock_timeout - 1
    # ... and not much after it.
    assert delay < bound, f"redelivered only after {delay:.1f}s"


def test_a_worker_killed_inside_the_redelivery_sweep_holds_its_batch_back_only_until_the_sweeps_mutex_expires(
    stack: Stack,
) -> None:
    settings = stack.settings
    stack.seed([product("SEED-1")])
    first = stack.start_worker(1, pool="solo")
    client = stack.redis()
    lock_key = "lock:" + lock_name(settings.catalog_path)
    assert client.set(lock_key, b"held-by-the-test", nx=True, ex=120)
    handle = stack.producer.submit([product("SWEPT-1")], batch_id="swept-1")
    wait_for_state(stack, handle.batch_id, "running", timeout=30)
    delivered_at = time.monotonic()  # kombu recorded it as unacked just before
    os.killpg(first.pid, signal.SIGKILL)
    first.process.wait(10)
    client.delete(lock_key)
    second = stack.start_worker(2, pool="solo")  # sweeping every second from now on

    # Just before the batch is due, a worker dies inside kombu's sweep (QoS.restore_visible): the
    # sweep's mutex, a redis-py lock under kombu's key, stays until it expires.
    time.sleep(max(0.0, delivered_at + settings.visibility_timeout - 2 - time.monotonic()))
    client.set("unacked_mutex", b"token-of-the-dead-sweeper", ex=UNACKED_MUTEX_EXPIRE_S)
    held_at = time.monotonic()
    state = stack.wait(handle, timeout=60)
    delay = time.monotonic() - held_at
    print(f"redelivered {delay:.1f}s after the sweep's mutex was left behind")

    assert state.result is not None and state.result.status == "applied", state
    assert "swept-1" in second.log() and list(stack.catalog()) == ["SEED-1", "SWEPT-1"]
    assert delay >= UNACKED_MUTEX_EXPIRE_S - 1, "the mutex did not hold the sweep back: the test proves nothing"
    # The README's promise (CATALOG_RESTORE_INTERVAL): 10 s more at worst, then the next sweeps.
    assert delay <= 10 + settings.restore_interval * 3 + 5, f"held back {delay:.1f}s by a dead worker's sweep"
