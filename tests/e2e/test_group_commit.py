"""Group commit with real worker processes: batches share commits, and a kill -9 inside one loses,
acknowledges early and applies twice nothing; nor does a kill between a commit and the
publication of its change events lose an event.

The worker runs the threads pool with 8 threads. The test holds the catalog lock while the
worker takes its 8 batches, so that they pile up in its committer: once the lock is free the
leader gathers them all into one commit. The kill lands, by tests/e2e/dying_worker.py, right
after that commit's commit point (its state renamed, its catalog not yet): a group already
durable and not one of its batches acknowledged.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis
import redis_lock

from catalog_core.events import events_key, read_events
from devtools.chaos.events_check import replay
from devtools.supervisor import celery_command
from producers.api import BatchHandle
from tests.e2e.worker_fixtures import WORKER_START_TIMEOUT_S, Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product
from devtools.reference_model import apply_in_sequence_order
from worker.lock import lock_name
from worker.state import read_state, state_path

pytestmark = pytest.mark.slow

THREADS = 8
WAIT_S = 40.0


def seed_products() -> list[dict[str, Any]]:
    return [product(f"S{n}") for n in range(6)]


def batches() -> list[list[dict[str, Any]]]:
    """Eight batches: patches (two of the same product), creations, and one the worker rejects
    (first, so that no lower batch could still create the product it patches)."""
    return [
        [{"product_id": "GHOST", "category": "a patch of a product nobody creates"}],
        [{"product_id": "S0", "category": "first"}],
        [product("N1"), {"product_id": "S1", "category": "patched"}],
        [{"product_id": "S0", "category": "second"}],  # same field as batch 0: sequence order decides
        [product("N2")],
        [{"product_id": "N1", "category": "patched after creation"}],
        [{"product_id": "S3", "inclusions": ["Lunch"]}, {"product_id": "S4", "category": "x"}],
        [product("N3"), product("N4")],
    ]


def start_threaded_worker(stack: Stack, name: str, die_at: str | None = None) -> Any:
    module = "tests.e2e.dying_worker" if die_at else "worker"
    command = celery_command("-A", module, "worker", "--loglevel=INFO", "--pool=threads",
                             f"--concurrency={THREADS}", f"--hostname={name}@%h")
    env = {**stack.env, **({"TEST_DIE_AT": die_at} if die_at else {})}
    return stack.supervisor.start(name, command, env=env)


def wait_until(condition: Any, what: str, stack: Stack, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            stack.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def finished(client: redis.Redis, batch_id: str) -> bool:
    """Whether the worker stored the batch's final result (it is acknowledged right after)."""
    meta = client.get(f"celery-task-meta-{batch_id}")
    return meta is not None and orjson.loads(meta)["status"] == "SUCCESS"


def unacked_ids(client: redis.Redis) -> set[str]:
    return {orjson.loads(payload)[0]["headers"]["id"] for payload in client.hvals("unacked")}


def hold_lock_while_the_worker_takes_its_batches(stack: Stack, handles: list[BatchHandle], die_at: str | None
                                                 ) -> Any:
    client = stack.redis()
    lock = redis_lock.Lock(client, lock_name(stack.settings.catalog_path), expire=30)
    assert lock.acquire(blocking=False)
    worker = start_threaded_worker(stack, "grouped", die_at)
    wait_until(lambda: len(unacked_ids(client)) == len(handles), "the worker to start and take every batch", stack,
               WORKER_START_TIMEOUT_S + WAIT_S)
    lock.release()
    return worker


def test_batches_that_arrive_together_share_commits_and_each_gets_its_own_outcome(stack: Stack) -> None:
    initial = seed_products()
    stack.seed(initial)
    records = batches()
    handles = [stack.producer.submit(batch, batch_id=f"g{n}") for n, batch in enumerate(records)]
    hold_lock_while_the_worker_takes_its_batches(stack, handles, None)
    states = stack.wait_all(handles, WAIT_S)
    statuses = {h.batch_id: states[h.batch_id].result.status.value for h in handles}  # type: ignore[union-attr]
    assert statuses["g0"] == "rejected" and all(s == "applied" for b, s in statuses.items() if b != "g0"), statuses
    state = read_state(state_path(stack.settings.catalog_path))
    assert state is not None and state.commits < len(records) - 1, "no two batches shared a commit"
    expected = apply_in_sequence_order(initial, [records[n] for n in sorted(range(8), key=lambda n: handles[n].sequence)])
    assert list(stack.catalog().values()) == expected


@pytest.mark.timeout(180)
def test_a_worker_killed_inside_a_group_commit_loses_nothing_acknowledges_nothing_early_applies_nothing_twice(
    stack: Stack,
) -> None:
    initial = seed_products()
    stack.seed(initial)
    records = batches()
    handles = [stack.producer.submit(batch, batch_id=f"k{n}") for n, batch in enumerate(records)]
    ids = [h.batch_id for h in handles]
    # The first folder sync of a commit follows its state rename: the commit point.
    dying = hold_lock_while_the_worker_takes_its_batches(stack, handles, "worker.commit:sync_folder_or_warn:after:1")
    wait_until(lambda: not dying.alive(), "the worker to kill itself inside its group commit", stack,
               WORKER_START_TIMEOUT_S + WAIT_S)

    client = stack.redis()
    state = read_state(state_path(stack.settings.catalog_path))
    assert state is not None
    committed = set(state.ledger)
    done = {batch_id for batch_id in ids if finished(client, batch_id)}
    waiting = unacked_ids(client)
    # Acknowledged (a final result) only once durable; durable but unacknowledged: the group
    # the kill interrupted, with at least two batches in it.
    assert done <= committed, f"results given before their commit was durable: {done - committed}"
    assert not done & waiting
    interrupted = committed - done
    assert interrupted <= waiting, f"committed batches neither finished nor kept for redelivery: {interrupted - waiting}"
    assert len(interrupted) >= 2, f"the killed commit carried {len(interrupted)} batch(es): no group was interrupted"
    assert set(ids) - done <= waiting, "a batch was lost"

    start_threaded_worker(stack, "survivor")
    states = stack.wait_all(handles, WAIT_S + stack.settings.visibility_timeout)
    for batch_id in ids:
        result = states[batch_id].result
        assert result is not None
        if batch_id in interrupted:
            assert result.status.value == "duplicate" and result.original is not None, (batch_id, result)
    final_state = read_state(state_path(stack.settings.catalog_path))
    assert final_state is not None and set(final_state.ledger) == set(ids)
    by_sequence = sorted(range(len(records)), key=lambda n: handles[n].sequence)
    assert list(stack.catalog().values()) == apply_in_sequence_order(initial, [records[n] for n in by_sequence])


@pytest.mark.timeout(180)
def test_a_worker_killed_between_a_commit_and_its_publication_loses_no_event(stack: Stack) -> None:
    initial = seed_products()
    stack.seed(initial)
    first = stack.producer.submit([{"product_id": "S0", "category": "committed, then the worker died"},
                                   product("N1")], batch_id="before-the-kill")
    dying = start_threaded_worker(stack, "dying", "worker.write_attempt:publish_committed:before:1")
    wait_until(lambda: not dying.alive(), "the worker to start and kill itself right after its commit", stack,
               WORKER_START_TIMEOUT_S + WAIT_S)
    client = stack.redis()
    assert client.xlen(events_key(stack.settings.queue)) == 0  # committed, not published
    start_threaded_worker(stack, "survivor")
    assert stack.wait(first, WAIT_S + stack.settings.visibility_timeout).result.status.value == "duplicate"  # type: ignore[union-attr]
    second = stack.wait(stack.producer.submit([{"product_id": "N1", "category": "after"}], batch_id="after-the-kill"))
    assert second.result is not None and second.result.status.value == "applied"
    events = [event for _, event in read_events(client, stack.settings.queue)]
    assert [e.batch_id for e in events if e is not None] == ["before-the-kill", "after-the-kill"]
    replayed = replay(initial, [e for e in events if e is not None])
    assert replayed == stack.catalog()
