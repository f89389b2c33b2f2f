"""A rolling upgrade, workers first: an upgraded worker applies what producers of the previous
release still send (``schema_version`` 1: no sequence), next to current messages.

Real worker process, real Redis; the old message goes through plain Celery ``send_task``, the
way the previous release's producer queued it, with no trace key and no sequence.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from catalog_core.celery_config import TASK_INGEST
from producers.state import BatchState
from schemas.batch import SCHEMA_VERSION, SUPPORTED_VERSIONS
from schemas.result import BatchStatus
from tests.e2e.worker_fixtures import Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product

pytestmark = pytest.mark.slow

PREVIOUS_VERSION = SCHEMA_VERSION - 1
RESULT_TIMEOUT_S = 60.0


def send_previous_version(stack: Stack, batch_id: str, records: list[dict[str, object]]) -> None:
    """What a producer of the previous release queues: version 1, no ``sequence`` key at all."""
    # Written out by hand, as docs/message-format.md describes version 1, not built by the
    # current model: the worker, not this test, must understand it.
    payload = {"schema_version": 1, "batch_id": batch_id, "source": "old-producer",
               "submitted_at": dt.datetime.now(dt.UTC).isoformat(), "items": records}
    stack.producer.app.send_task(TASK_INGEST, args=[payload], task_id=batch_id, queue=stack.settings.queue)


def outcome(stack: Stack, batch_id: str) -> BatchState:
    """The batch's result, polled, bounded: an old producer leaves no trace, so this waits for the
    result itself."""
    handle = stack.producer.handle(batch_id)
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while (state := handle.state()).result is None:
        if time.monotonic() > deadline:
            stack.fail(f"{batch_id} has no result after {RESULT_TIMEOUT_S:g}s (state {state.state})")
        time.sleep(0.2)
    return state


def test_the_worker_still_understands_the_previous_message_version() -> None:
    assert PREVIOUS_VERSION >= 1 and PREVIOUS_VERSION in SUPPORTED_VERSIONS


def test_an_upgraded_worker_applies_a_previous_version_batch_after_current_ones_in_arrival_order(
    stack: Stack,
) -> None:
    stack.start_worker(1)
    current = stack.producer.submit([product("UPG-1", product_name="from the new producer")], batch_id="new-1")
    first = stack.wait(current, timeout=RESULT_TIMEOUT_S)
    assert first.result is not None and first.result.status == BatchStatus.APPLIED

    send_previous_version(stack, "old-1", [product("UPG-1", product_name="from the old producer"),
                                           product("UPG-2")])
    old = outcome(stack, "old-1").result
    assert old is not None
    assert old.status == BatchStatus.APPLIED, old.errors
    # A version-1 batch takes its sequence when the worker applies it: above every earlier one,
    # so what it writes wins over the batch applied before it, as it would in sequence order.
    assert old.sequence is not None and first.result.sequence is not None
    assert old.sequence > first.result.sequence
    catalog = stack.catalog()
    assert catalog["UPG-1"]["product_name"] == "from the old producer"
    assert "UPG-2" in catalog

