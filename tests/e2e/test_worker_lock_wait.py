"""A batch that cannot get the catalog lock in time is retried, then applied once the lock is free.

Another writer (the test) holds the lock for longer than CATALOG_LOCK_TIMEOUT: the worker's first
attempt times out, the task is retried with backoff, and a later attempt applies it.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.worker_fixtures import Stack, StackFactory, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product
from worker.lock import lock_name

pytestmark = pytest.mark.slow

HOLD_S = 8.0  # over lock_timeout (5 s): attempt 1 times out; under 2 lock_timeouts: attempt 2 gets it


def hold_lock_then_submit(stack: Stack) -> tuple[str, float]:
    """Hold the catalog lock for HOLD_S, submit a batch, and release the lock in time; returns its id."""
    client = stack.redis()
    lock_key = "lock:" + lock_name(stack.settings.catalog_path)
    assert client.set(lock_key, b"held-by-the-test", nx=True, px=int(HOLD_S * 1000))
    held_at = time.monotonic()
    handle = stack.producer.submit([product("WAITED-1")], batch_id="waited-1")
    return handle.batch_id, held_at


def test_a_batch_that_waits_for_the_lock_past_the_lock_timeout_is_retried_and_applied(
    stack_factory: StackFactory,
) -> None:
    stack = stack_factory()
    assert stack.settings.soft_time_limit > stack.settings.lock_timeout
    stack.seed([product("SEED-1")])
    worker = stack.start_worker(1)

    batch_id, held_at = hold_lock_then_submit(stack)
    state = stack.wait(stack.producer.handle(batch_id), timeout=40)

    assert state.result is not None and state.result.status == "applied", state
    assert time.monotonic() - held_at >= HOLD_S
    log = worker.log()
    assert "batch waited-1 from api will retry" in log and "held the lock" in log, stack.logs()
    assert "batch waited-1 from api: 1 record(s), attempt 2" in log, stack.logs()
    assert "WAITED-1" in stack.catalog()
