"""Hand-made queue messages, pushed with plain redis-py as any client could: none may stop a worker.

The envelope is laid out as kombu's Redis transport lays it out: a JSON object LPUSHed onto the
queue's list, with the task body base64-encoded (``properties.body_encoding``), the content type
beside it, and Celery's protocol 2 headers (``task``, ``id`` ...). A message that cannot be decoded
must end as a rejected batch with the reason and its task id, in ``catalog rejected`` and in
``catalog status``; after each one the same worker still applies a good batch.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
import pytest

from catalog_core.celery_config import TASK_INGEST
from catalog_core.sequence import next_sequence
from schemas import BatchMessage
from tests.e2e.worker_fixtures import CeleryProcess, Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product

pytestmark = pytest.mark.slow

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_headers(task_id: str) -> dict[str, Any]:
    return {"lang": "py", "task": TASK_INGEST, "id": task_id, "shadow": None, "eta": None, "expires": None,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": "", "kwargsrepr": "", "origin": "a hand-made message",
            "ignore_result": False}


def envelope(queue: str, task_id: str, *, body: bytes | None = None, raw_body: str | None = None,
             content_type: str = "application/json", headers: dict[str, Any] | None = None) -> bytes:
    """The JSON kombu's Redis transport pushes: ``raw_body`` is put in as is, ``body`` base64-encoded."""
    encoded = raw_body if raw_body is not None else base64.b64encode(body or b"").decode()
    return orjson.dumps({
        "body": encoded,
        "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": task_headers(task_id) if headers is None else headers,
        "properties": {
            "correlation_id": task_id, "reply_to": str(uuid.uuid4()), "delivery_mode": 2,
            "delivery_info": {"exchange": queue, "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    })


def batch_body(stack: Stack, batch_id: str, kwargs: Any) -> bytes:
    sequence = next_sequence(stack.redis(), stack.settings.queue)
    message = BatchMessage(batch_id=batch_id, source="hand-made", items=[product(batch_id.upper())], sequence=sequence)
    return orjson.dumps([[message.model_dump(mode="json")], kwargs, EMBED])


def push(stack: Stack, raw: bytes) -> None:
    stack.redis().lpush(stack.settings.queue, raw)


def still_applies_a_good_batch(stack: Stack, worker: CeleryProcess, batch_id: str) -> None:
    state = stack.wait(stack.producer.submit([product(batch_id.upper())], batch_id=batch_id), timeout=40)
    assert state.result is not None and state.result.status == "applied", state
    assert worker.alive(), stack.logs()


def bad_messages(stack: Stack) -> dict[str, tuple[bytes, str]]:
    """Task id -> (the raw message, a word its rejection reason must contain)."""
    queue = stack.settings.queue
    good_body = batch_body(stack, "never-applied", {})
    return {
        "bad-base64": (envelope(queue, "bad-base64", raw_body="%%% this is not base64 %%%"), "base64"),
        "bad-json": (envelope(queue, "bad-json", body=b"{this is not json"), "json"),
        "not-a-task": (envelope(queue, "not-a-task", body=b'{"hello": "world"}', headers={}), "not a celery task"),
        "wrong-type": (envelope(queue, "wrong-type", body=good_body, content_type="application/x-python-serialize"),
                       "application/x-python-serialize"),
        "wrong-shape": (envelope(queue, "wrong-shape", body=b'{"args": 1}'), "[args, kwargs, embed]"),
        "no-envelope": (orjson.dumps({"headers": {"id": "no-envelope"}, "body": "e30="}), "not a kombu message"),
    }


def test_no_undecodable_message_stops_a_worker_and_each_is_rejected_with_its_reason_and_task_id(
    stack: Stack,
) -> None:
    settings = stack.settings
    worker = stack.start_worker(1)
    cases = bad_messages(stack)
    for n, (task_id, (raw, _reason)) in enumerate(cases.items()):
        push(stack, raw)
        # The queue is first in, first out: once the next good batch is applied, the bad one was handled.
        still_applies_a_good_batch(stack, worker, f"good-after-{n}")
        assert worker.alive(), f"the worker stopped on the message {task_id}\n{stack.logs()}"
    assert "Unrecoverable error" not in worker.log(), stack.logs()

    listed = stack.cli("rejected", "--json")
    assert listed.returncode == 0, listed.stderr
    rejected = {entry["batch_id"]: entry for entry in map(orjson.loads, listed.stdout.splitlines())}
    for task_id, (_raw, reason) in cases.items():
        assert task_id in rejected, f"{task_id} is not listed as rejected: {sorted(rejected)}"
        messages = " ".join(error["msg"] for error in rejected[task_id]["result"]["errors"]).lower()
        assert reason.lower() in messages, (task_id, messages)
        status = stack.cli("status", task_id, "--json")
        assert status.returncode == 1, status.stdout + status.stderr
        assert orjson.loads(status.stdout.splitlines()[0])["status"] == "rejected", status.stdout
        state = stack.producer.handle(task_id).state()
        assert state.result is not None and state.result.status == "rejected", state
    assert stack.redis().llen(settings.queue) == 0


def test_a_queue_entry_that_is_not_json_does_not_stop_the_worker_and_is_listed_as_rejected(stack: Stack) -> None:
    worker = stack.start_worker(1)
    push(stack, b"\x00 this is not json at all")
    still_applies_a_good_batch(stack, worker, "good-after-garbage")
    listed = stack.cli("rejected", "--json")
    reasons = [error["msg"] for line in listed.stdout.splitlines() for error in orjson.loads(line)["result"]["errors"]]
    assert any("not json" in reason.lower() for reason in reasons), listed.stdout
    assert "Unrecoverable error" not in worker.log(), stack.logs()


def test_a_task_message_with_null_kwargs_as_celery_node_sends_is_applied(stack: Stack) -> None:
    worker = stack.start_worker(1)
    push(stack, envelope(stack.settings.queue, "kwargs-null", body=batch_body(stack, "kwargs-null", None)))
    state = stack.wait(stack.producer.handle("kwargs-null"), timeout=40)
    assert state.result is not None and state.result.status == "applied", (state, stack.logs())
    assert "KWARGS-NULL" in stack.catalog()
    still_applies_a_good_batch(stack, worker, "good-after-kwargs-null")
