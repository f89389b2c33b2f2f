"""Where a batch is, as `catalog status` and `enqueue --wait` say it: unknown, queued (since when),
lost, or done; and a batch id sent again is a duplicate, with or without the same records."""

from __future__ import annotations

import orjson
import pytest

from producers.tracking import submission_key
from tests.e2e.worker_fixtures import Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product, write_jsonl

pytestmark = pytest.mark.slow


def test_an_id_nobody_queued_is_unknown_with_its_own_exit_code(stack: Stack) -> None:
    shown = stack.cli("status", "batch-doesnotexist")
    assert shown.returncode == 5, shown.stdout + shown.stderr
    assert "unknown" in shown.stdout and "Traceback" not in shown.stderr


def test_a_queued_batch_says_since_when_and_exits_pending(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    feed = write_jsonl(tmp_path / "feed.jsonl", [product("Q-1")])
    queued = stack.cli("enqueue", str(feed), "--batch-id", "waiting-1")  # no worker runs yet
    assert queued.returncode == 0, queued.stderr
    shown = stack.cli("status", "waiting-1", "--json")
    assert shown.returncode == 4
    payload = orjson.loads(shown.stdout)
    assert payload["status"] == "queued" and payload["since"] is not None


def test_a_batch_redis_lost_is_reported_lost_not_queued_forever(stack: Stack) -> None:
    handle = stack.producer.submit([product("L-1")], batch_id="lost-1")
    stack.redis().flushall()  # Redis restarted without persistence: the queue and the trace are gone
    state = handle.wait(timeout=10)
    assert state.state == "lost" and "resubmit" in (state.reason or "")


def test_a_resubmitted_batch_id_answers_duplicate_and_says_when_the_records_differ(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack.seed([product("SEED")])
    stack.start_worker(1)
    first = write_jsonl(tmp_path / "first.jsonl", [product("R-1")])
    again = write_jsonl(tmp_path / "again.jsonl", [product("R-1")])
    other = write_jsonl(tmp_path / "other.jsonl", [product("R-2")])

    done = stack.cli("enqueue", str(first), "--batch-id", "feed-7", "--wait", "--json", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert orjson.loads(done.stdout)["status"] == "applied"

    same = stack.cli("enqueue", str(again), "--batch-id", "feed-7", "--wait", "--json", "--timeout", "60")
    assert same.returncode == 0, same.stdout + same.stderr
    payload = orjson.loads(same.stdout)
    assert payload["status"] == "duplicate" and payload["original"]["status"] == "applied"
    assert payload["content_matches"] is True

    differ = stack.cli("enqueue", str(other), "--batch-id", "feed-7", "--wait", "--timeout", "60")
    assert differ.returncode == 1, differ.stdout + differ.stderr
    assert "DIFFER" in differ.stdout
    assert "R-2" not in stack.catalog()


def test_status_with_redis_down_exits_3_with_a_message_not_a_traceback(stack: Stack) -> None:
    shown = stack.cli("status", "any-batch", env={"CATALOG_REDIS_URL": "redis://127.0.0.1:1/0"}, timeout=120)
    assert shown.returncode == 3, shown.stdout + shown.stderr
    assert "Traceback" not in shown.stderr and "batch any-batch" in shown.stderr


def test_the_submission_trace_lives_as_long_as_results(stack: Stack) -> None:
    stack.producer.submit([product("T-1")], batch_id="trace-1")
    ttl = stack.redis().ttl(submission_key(stack.settings.queue, "trace-1"))
    assert 0 < ttl <= stack.settings.result_expires
