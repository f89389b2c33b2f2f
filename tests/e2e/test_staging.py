"""Staging with real processes: batches a worker staged for the lock holder are committed exactly
once, whether the holder commits them, or dies with them in hand before or after its commit.

The holder is tests/e2e/staging_holder.py: it takes the lock, and once a batch is staged for it
commits one of its own through the real group committer, killing itself (SIGKILL) right after
taking the staged batches, or right before answering them. Its lock then lives until it
expires, as a dead worker's does; the worker that staged them waits for that, takes the lock,
and commits what no holder answered: the ledger tells those the dead holder did commit.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from devtools.reference_model import apply_in_sequence_order
from tests.e2e.test_group_commit import WAIT_S, seed_products, start_threaded_worker, wait_until
from tests.e2e.worker_fixtures import WORKER_START_TIMEOUT_S, Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product
from worker.lock import lock_name
from worker.staging import staging_key
from worker.state import read_state, state_path

pytestmark = pytest.mark.slow


def records() -> list[list[dict[str, Any]]]:
    return [[{"product_id": "S0", "category": f"staged {n}"}, product(f"N{n}")] for n in range(4)]


def run_with_a_dying_holder(stack: Stack, mode: str) -> dict[str, str]:
    """The worker's batches, staged for a holder that dies in ``mode``; each batch's final status."""
    initial = seed_products()
    stack.seed(initial)
    holder = stack.supervisor.start("holder", [sys.executable, "-m", "tests.e2e.staging_holder", mode, "1"])
    wait_until(lambda: "holding" in holder.log(), "the holder to take the lock", stack)
    batches = records()
    handles = [stack.producer.submit(batch, batch_id=f"s{n}") for n, batch in enumerate(batches)]
    start_threaded_worker(stack, "feeder")
    wait_until(lambda: not holder.alive(), "the holder to die with staged batches in hand", stack,
               WORKER_START_TIMEOUT_S + WAIT_S)
    assert holder.returncode == -9, holder.tail()
    states = stack.wait_all(handles, WAIT_S + stack.settings.lock_expire)
    statuses = {h.batch_id: states[h.batch_id].result.status.value for h in handles}  # type: ignore[union-attr]

    state = read_state(state_path(stack.settings.catalog_path))
    assert state is not None and set(state.ledger) >= {h.batch_id for h in handles}
    own = 1 if "holder-own" in state.ledger else 0  # the holder's own batch, committed before answering
    assert state.applied == len(handles) + own, "a batch was applied twice, or not at all"
    assert stack.redis().llen(staging_key(lock_name(stack.settings.catalog_path))) == 0
    by_sequence = sorted(range(len(batches)), key=lambda n: handles[n].sequence)
    expected = apply_in_sequence_order(initial, [batches[n] for n in by_sequence])
    catalog = stack.catalog()
    catalog.pop("HOLDER", None)
    assert list(catalog.values()) == expected
    return statuses


@pytest.mark.timeout(180)
def test_batches_a_holder_took_and_died_with_before_its_commit_are_committed_once_by_their_worker(
    stack: Stack,
) -> None:
    statuses = run_with_a_dying_holder(stack, "after-take")
    assert set(statuses.values()) == {"applied"}, statuses


@pytest.mark.timeout(180)
def test_batches_a_holder_committed_and_died_before_answering_are_answered_as_duplicates_not_applied_twice(
    stack: Stack,
) -> None:
    statuses = run_with_a_dying_holder(stack, "before-answer")
    assert "duplicate" in statuses.values() and set(statuses.values()) <= {"applied", "duplicate"}, statuses
