"""A producer with no Celery at all, written from docs/message-format.md alone, against a real worker.

The envelope is built by hand, the sequence is taken with the Lua script read out of the page
itself, and the batch is pushed with a plain LPUSH: if the page is wrong, these tests fail.
Nothing here imports ``producers`` or Celery to enqueue (Celery only pings the workers up).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.worker_fixtures import Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product

pytestmark = pytest.mark.slow

MESSAGE_FORMAT = Path(__file__).resolve().parents[2] / "docs" / "message-format.md"
RESULT_TIMEOUT_S = 60.0


def documented_block(marker: str) -> str:
    """The fenced code block that follows ``<!-- marker -->`` in docs/message-format.md."""
    text = MESSAGE_FORMAT.read_text(encoding="utf-8")
    _, found, after = text.partition(f"<!-- {marker} -->")
    assert found, f"docs/message-format.md has no <!-- {marker} --> block"
    block = re.match(r"\s*```[a-z]*\n(.*?)\n```", after, re.DOTALL)
    assert block is not None, f"no fenced block after <!-- {marker} -->"
    return block.group(1)


class PlainProducer:
    """What the page says, step by step: message, sequence, trace, envelope, LPUSH."""

    def __init__(self, client: redis.Redis, queue: str, result_expires: int) -> None:
        self.client, self.queue, self.result_expires = client, queue, result_expires
        self.next_sequence_script = documented_block("script:next-sequence")

    def take_sequence(self) -> int:
        return int(self.client.eval(self.next_sequence_script, 1, f"{self.queue}:sequence", 0, 2**53 - 1, 2**20))

    def message(self, records: list[dict[str, Any]], batch_id: str, sequence: int | None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "schema_version": 1 if sequence is None else 2, "batch_id": batch_id, "source": "plain-redis",
            "submitted_at": dt.datetime.now(dt.UTC).isoformat(), "items": records,
        }
        if sequence is not None:
            message["sequence"] = sequence
        return message

    def record_trace(self, message: dict[str, Any]) -> None:
        digest = hashlib.sha256(json.dumps(message["items"], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        trace = {"batch_id": message["batch_id"], "source": message["source"], "sequence": message.get("sequence"),
                 "records": len(message["items"]), "content_sha256": digest, "submitted_at": message["submitted_at"]}
        self.client.set(f"{self.queue}:submitted:{message['batch_id']}", json.dumps(trace), ex=self.result_expires)

    def push(self, message: dict[str, Any], task_id: str | None = None) -> None:
        task_id = task_id or message["batch_id"]
        body = json.dumps([[message], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
        envelope = {
            "body": base64.b64encode(body.encode("utf-8")).decode("ascii"),
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "headers": {
                "lang": "py", "task": "catalog.ingest_batch", "id": task_id, "root_id": task_id,
                "parent_id": None, "group": None, "retries": 0, "eta": None, "expires": None,
                "timelimit": [None, None], "argsrepr": f"{message['batch_id']} ({len(message['items'])} records)",
                "kwargsrepr": "{}", "origin": f"plain-redis@{socket.gethostname()}",
            },
            "properties": {
                "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": self.queue}, "priority": 0,
                "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
            },
        }
        self.client.lpush(self.queue, json.dumps(envelope))

    def submit(self, records: list[dict[str, Any]], batch_id: str, *, with_sequence: bool = True,
               with_trace: bool = True) -> dict[str, Any]:
        message = self.message(records, batch_id, self.take_sequence() if with_sequence else None)
        if with_trace:
            self.record_trace(message)
        self.push(message)
        return message


def plain_producer(stack: Stack) -> PlainProducer:
    return PlainProducer(stack.redis(), stack.settings.queue, stack.settings.result_expires)


def wait_for_result(stack: Stack, task_id: str) -> dict[str, Any]:
    """Poll ``celery-task-meta-<task_id>`` (as the page says) until it is final; bounded."""
    client = stack.redis()
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while time.monotonic() < deadline:
        raw = client.get(f"celery-task-meta-{task_id}")
        if raw is not None:
            meta: dict[str, Any] = json.loads(raw)
            if meta["status"] in {"SUCCESS", "FAILURE"}:
                return meta
        time.sleep(0.2)
    stack.fail(f"no final result for task {task_id} within {RESULT_TIMEOUT_S:g}s")
    raise AssertionError("unreachable")


def status_of(stack: Stack, batch_id: str) -> tuple[int, dict[str, Any]]:
    shown = stack.cli("status", batch_id, "--json")
    assert "Traceback" not in shown.stderr, shown.stderr
    return shown.returncode, json.loads(shown.stdout)


def test_a_batch_pushed_by_hand_is_queued_then_applied_and_status_shows_it(stack: Stack) -> None:
    stack.seed([product("OLD-1", product_name="Old name")])
    producer = plain_producer(stack)
    message = producer.submit([product("NEW-1"), {"product_id": "OLD-1", "product_name": "Renamed"}], "plain-1")

    code, queued = status_of(stack, "plain-1")  # no worker yet: the trace says queued
    assert (code, queued["status"]) == (4, "queued") and queued["since"] is not None

    stack.start_worker(1)
    meta = wait_for_result(stack, "plain-1")
    assert meta["status"] == "SUCCESS", meta
    result = meta["result"]
    assert (result["status"], result["created"], result["updated"]) == ("applied", 1, 1), result
    assert result["sequence"] == message["sequence"]
    assert stack.catalog()["OLD-1"]["product_name"] == "Renamed" and "NEW-1" in stack.catalog()

    code, shown = status_of(stack, "plain-1")
    assert (code, shown["status"], shown["sequence"]) == (0, "applied", message["sequence"])


def test_the_batch_submitted_later_wins_even_when_it_is_applied_first(stack: Stack) -> None:
    stack.seed([product("ORD-1", product_name="Seeded")])
    producer = plain_producer(stack)
    earlier = producer.message([{"product_id": "ORD-1", "product_name": "Earlier"}], "ord-earlier",
                               producer.take_sequence())
    later = producer.message([{"product_id": "ORD-1", "product_name": "Later"}], "ord-later",
                             producer.take_sequence())
    producer.push(later)  # the queue is first in, first out: the later batch is applied first
    producer.push(earlier)
    stack.start_worker(1)

    assert wait_for_result(stack, "ord-later")["result"]["status"] == "applied"
    earlier_result = wait_for_result(stack, "ord-earlier")["result"]
    assert earlier_result["superseded"] == [
        {"index": 0, "product_id": "ORD-1", "field": "product_name", "by_sequence": later["sequence"]}]
    assert stack.catalog()["ORD-1"]["product_name"] == "Later"


def test_a_version_1_message_without_sequence_or_trace_is_unknown_until_applied_with_a_sequence_the_worker_takes(
        stack: Stack) -> None:
    producer = plain_producer(stack)
    before = producer.take_sequence()
    producer.submit([product("V1-1")], "plain-v1", with_sequence=False, with_trace=False)
    code, untraced = status_of(stack, "plain-v1")  # no trace, no result yet: as for a mistyped id
    assert (code, untraced["status"]) == (5, "unknown")
    stack.start_worker(1)

    result = wait_for_result(stack, "plain-v1")["result"]
    assert result["status"] == "applied" and result["sequence"] > before, result
    assert "V1-1" in stack.catalog()
    code, shown = status_of(stack, "plain-v1")
    assert (code, shown["status"]) == (0, "applied")


def test_a_task_id_other_than_the_batch_id_leaves_the_batch_known_only_to_the_catalogs_ledger(
    stack: Stack, tmp_path: Path
) -> None:
    producer = plain_producer(stack)
    message = producer.message([product("ID-1")], "plain-wrong-id", producer.take_sequence())
    producer.push(message, task_id=str(uuid.uuid4()))
    stack.start_worker(1)
    stray = producer.message([product("ID-2")], "plain-after", producer.take_sequence())
    producer.push(stray)
    wait_for_result(stack, "plain-after")  # one worker, first in first out: the first one is done too

    assert "ID-1" in stack.catalog()  # applied, but its result is stored under the other id
    # Where the catalog is (the workers' machine), status reads the ledger, keyed by batch id.
    code, shown = status_of(stack, "plain-wrong-id")
    assert (code, shown["status"]) == (0, "applied")
    # Anywhere else (a producer's machine), Redis alone cannot tell.
    elsewhere = stack.cli("status", "plain-wrong-id", "--json", env={"CATALOG_PATH": str(tmp_path / "products.json")})
    assert "Traceback" not in elsewhere.stderr, elsewhere.stderr
    assert (elsewhere.returncode, json.loads(elsewhere.stdout)["status"]) == (5, "unknown")
