"""Batches that must not change the catalog: refused by the worker, by the producer, or never decoded."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import orjson
import pytest

from catalog_core.celery_config import TASK_INGEST
from catalog_core.errors import BatchRefusedError
from producers.api import client_app
from tests.e2e.worker_fixtures import Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product, write_jsonl

pytestmark = pytest.mark.slow


def json_lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def queue_length(stack: Stack) -> int:
    return int(stack.redis().llen(stack.settings.queue))


def test_a_patch_for_a_product_the_catalog_lacks_is_rejected_by_the_worker_and_listed(stack: Stack) -> None:
    before = stack.seed([product("REAL-1")])
    stack.start_worker(1)

    handle = stack.producer.submit([{"product_id": "GHOST", "category": "x"}], batch_id="ghost-1", source="ghosts")
    state = stack.wait(handle)

    assert state.result is not None and state.result.status == "rejected", state
    assert state.result.errors, state.result
    assert all(error.product_id == "GHOST" for error in state.result.errors)
    assert any("new product" in error.msg for error in state.result.errors), state.result.errors
    assert stack.settings.catalog_path.read_bytes() == before
    assert not stack.settings.backup_path.exists() or not any(stack.settings.backup_path.iterdir())

    listed = stack.cli("rejected", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json_lines(listed.stdout)
    assert entry["batch_id"] == "ghost-1"
    assert entry["source"] == "ghosts"
    assert entry["result"]["status"] == "rejected"
    assert [e["loc"] for e in entry["result"]["errors"]] == [e.loc for e in state.result.errors]

    human = stack.cli("rejected")
    assert human.returncode == 0, human.stderr
    assert "ghost-1" in human.stdout and "GHOST" in human.stdout

    status = stack.cli("status", "ghost-1")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "rejected" in status.stdout
    status_json = stack.cli("status", "ghost-1", "--json")
    assert status_json.returncode == 1
    assert json_lines(status_json.stdout)[0]["status"] == "rejected"


@pytest.mark.parametrize(
    "record",
    [
        {"product_id": "REAL-1", "pricing": [{"tier_name": "Adult", "price_aed": -5}]},
        {"product_id": "REAL-1", "colour": "blue"},
    ],
    ids=["negative-price", "unknown-field"],
)
def test_a_batch_the_producer_refuses_never_enters_the_queue(stack: Stack, record: dict) -> None:
    # No worker runs: whatever is queued stays in the queue, where the test can see it.
    stack.seed([product("REAL-1")])
    client = stack.redis()
    keys_before = set(client.keys("*"))

    with pytest.raises(BatchRefusedError) as refused:
        stack.producer.submit([product("FINE-1"), record], batch_id="refused-1")
    assert "not queued" in str(refused.value)
    assert [error.index for error in refused.value.errors] == [1]

    assert queue_length(stack) == 0
    assert stack.producer.handle("refused-1").state().state == "unknown"  # never queued, no result
    assert not [k for k in set(client.keys("*")) - keys_before if b"refused-1" in k]

    batch = write_jsonl(stack.tmp_path / "bad.jsonl", [product("FINE-2"), record])
    enqueued = stack.cli("enqueue", str(batch))
    assert enqueued.returncode == 1, enqueued.stdout + enqueued.stderr
    assert "not queued" in enqueued.stdout + enqueued.stderr
    assert "line 2" in enqueued.stdout  # the error names the file's line
    assert "Traceback" not in enqueued.stderr
    assert queue_length(stack) == 0

    as_json = stack.cli("enqueue", str(batch), "--json")
    assert as_json.returncode == 1
    [line] = json_lines(as_json.stdout)
    assert line["status"] == "rejected" and line["errors"][0]["line"] == 2
    assert queue_length(stack) == 0
    assert "FINE-1" not in stack.catalog() and "FINE-2" not in stack.catalog()


class Trap:
    """Unpickling this runs code: it creates a marker file, then stands for a harmless string."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        code = f"__import__('pathlib').Path({str(self.marker)!r}).touch() or 'pickled-source'"
        return (eval, (code,))


def test_a_message_serialized_with_pickle_is_refused_and_never_run(stack: Stack) -> None:
    stack.seed([product("REAL-1")])
    worker = stack.start_worker(1)
    marker = stack.tmp_path / "unpickled-in-the-worker"
    control = stack.tmp_path / "unpickled-here"
    assert pickle.loads(pickle.dumps(Trap(control))) == "pickled-source" and control.exists()  # the trap works

    # A producer that would allow pickle: the worker must not.
    pickler = client_app(stack.settings, results=False)
    pickler.conf.update(task_serializer="pickle", accept_content=["json", "pickle"])
    payload = {"schema_version": 1, "batch_id": "pickled-1", "source": Trap(marker), "items": [product("PICKLED-1")]}
    pickler.send_task(TASK_INGEST, args=[payload], task_id="pickled-1", queue=stack.settings.queue,
                      serializer="pickle")

    # The queue is first in, first out: once a later JSON batch is applied, the pickled one was handled.
    after = stack.wait(stack.producer.submit([product("AFTER-PICKLE")], batch_id="after-pickle"))
    assert after.result is not None and after.result.status == "applied", after

    assert "PICKLED-1" not in stack.catalog()
    assert "AFTER-PICKLE" in stack.catalog()
    assert not marker.exists(), "the worker unpickled the message"
    log = worker.log()
    assert "Refusing to deserialize untrusted content of type pickle" in log, stack.logs()
    # Never run, but not lost either: rejected with the reason (worker/bad_messages.py).
    pickled = stack.producer.handle("pickled-1").state()
    assert pickled.result is not None and pickled.result.status == "rejected", pickled
    assert "untrusted content of type pickle" in pickled.result.errors[0].msg
    # Dropped, not put back for another worker to trip on.
    assert queue_length(stack) == 0
    time.sleep(1)
    assert "PICKLED-1" not in stack.catalog()


def test_a_message_of_an_unknown_schema_version_is_rejected_with_the_reason(stack: Stack) -> None:
    before = stack.seed([product("REAL-1")])
    stack.start_worker(1)

    stack.producer.app.send_task(
        TASK_INGEST, args=[{"schema_version": 99, "batch_id": "weird-1", "items": []}], task_id="weird-1",
        queue=stack.settings.queue,
    )
    state = stack.wait(stack.producer.handle("weird-1"))

    assert state.result is not None and state.result.status == "rejected", state
    assert state.result.batch_id == "weird-1"
    [error] = state.result.errors
    assert error.loc == "schema_version"
    assert "unsupported schema_version 99" in error.msg
    assert stack.settings.catalog_path.read_bytes() == before

    listed = stack.cli("rejected", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json_lines(listed.stdout)
    assert entry["batch_id"] == "weird-1"
    assert entry["result"]["errors"][0]["loc"] == "schema_version"
    human = stack.cli("rejected")
    assert "weird-1" in human.stdout and "schema_version" in human.stdout

    status = stack.cli("status", "weird-1", "--json")
    assert status.returncode == 1
    assert json_lines(status.stdout)[0]["status"] == "rejected"
