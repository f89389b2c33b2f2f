"""worker.tasks: the task bodies against a real Redis and catalog; Celery's delivery is in tests/e2e."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from catalog_core.rejections import find_rejection
from catalog_core.sequence import abandoned_sequences, next_sequence
from catalog_core.settings import Settings, load_settings
from schemas import BatchMessage
from tests.helpers import product
from worker.app import WorkerContext
from worker.backups import backup_name
from worker.lock import lock_name
from catalog_core.errors import BatchFailedError
from worker.tasks import ingest_batch, rotate


class RetryRequested(Exception):
    pass


@dataclass
class StubTask:
    """Stands in for Celery's bound task: the request it reads and the retry it asks for."""

    retries: int = 0
    retried_with: list[dict[str, Any]] = field(default_factory=list)

    @property
    def request(self) -> SimpleNamespace:
        return SimpleNamespace(id="task-id", retries=self.retries)

    def retry(self, **kwargs: Any) -> RetryRequested:
        self.retried_with.append(kwargs)
        return RetryRequested()


def message(batch_id: str, items: list[Any], sequence: int | None = None) -> dict[str, Any]:
    return BatchMessage(batch_id=batch_id, source="tests", items=items, sequence=sequence).model_dump(mode="json")


@pytest.fixture
def context(settings: Settings) -> WorkerContext:
    return WorkerContext(settings)


def test_a_valid_batch_is_applied_and_reported(context: WorkerContext) -> None:
    result = ingest_batch(StubTask(), context, message("b1", [product("A")]))
    assert (result["batch_id"], result["status"], result["created"]) == ("b1", "applied", 1)


def test_an_invalid_batch_is_rejected_recorded_and_not_retried(context: WorkerContext) -> None:
    task = StubTask()
    result = ingest_batch(task, context, message("b2", [{"product_id": "GHOST", "category": "x"}]))
    assert result["status"] == "rejected" and task.retried_with == []
    rejection = find_rejection(context.store.redis, context.settings.queue, "b2")
    assert rejection is not None and rejection.source == "tests"
    assert rejection.result.errors[0].product_id == "GHOST"


def test_a_message_of_an_unknown_schema_version_is_refused_clearly(context: WorkerContext) -> None:
    result = ingest_batch(StubTask(), context, {"schema_version": 99, "batch_id": "weird", "items": []})
    assert result["status"] == "rejected" and result["batch_id"] == "weird"
    assert any(e["loc"] == "schema_version" for e in result["errors"])


def test_an_unsupported_schema_version_is_named_with_the_versions_understood(context: WorkerContext) -> None:
    result = ingest_batch(StubTask(), context, {"schema_version": 99, "batch_id": "v99", "items": []})
    [error] = result["errors"]
    assert error["loc"] == "schema_version" and "unsupported schema_version 99" in error["msg"]
    assert "1, 2" in error["msg"]


def test_a_batch_stopped_by_the_soft_time_limit_is_retried(context: WorkerContext, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from celery.exceptions import SoftTimeLimitExceeded

    def too_slow(*_args: object, **_kwargs: object) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(context.store, "apply_group", too_slow)
    task = StubTask()
    with pytest.raises(RetryRequested):
        ingest_batch(task, context, message("slow", [product("A")]))
    assert len(task.retried_with) == 1


def test_a_message_that_is_not_an_object_is_refused_under_the_task_id(context: WorkerContext) -> None:
    result = ingest_batch(StubTask(), context, ["not", "a", "message"])
    assert result["status"] == "rejected" and result["batch_id"] == "task-id"


def test_a_batch_over_the_limit_is_rejected_at_the_worker(catalog_path, redis_url) -> None:  # type: ignore[no-untyped-def]
    context = WorkerContext(load_settings(path=catalog_path, redis_url=redis_url, max_batch_items=2))
    result = ingest_batch(StubTask(), context, message("big", [product(str(i)) for i in range(3)]))
    assert result["status"] == "rejected" and "CATALOG_MAX_BATCH_ITEMS" in result["errors"][0]["msg"]
    assert not catalog_path.exists()


def test_a_held_lock_makes_the_batch_retry_with_backoff(catalog_path, redis_url) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(path=catalog_path, redis_url=redis_url, lock_timeout=1, retry_backoff_max=30)
    redis.Redis.from_url(redis_url).set(f"lock:{lock_name(catalog_path)}", b"other", ex=30)
    task = StubTask(retries=2)
    with pytest.raises(RetryRequested):
        ingest_batch(task, WorkerContext(settings), message("b3", [product("A")]))
    [retry] = task.retried_with
    assert 0 <= retry["countdown"] <= 30 and retry["max_retries"] == settings.max_retries
    assert "lock" in str(retry["exc"])


def test_a_batch_fails_with_its_reason_after_the_last_retry(catalog_path, redis_url) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(path=catalog_path, redis_url=redis_url, lock_timeout=1, max_retries=3)
    redis.Redis.from_url(redis_url).set(f"lock:{lock_name(catalog_path)}", b"other", ex=30)
    with pytest.raises(BatchFailedError, match="gave up after 4 attempts"):
        ingest_batch(StubTask(retries=3), WorkerContext(settings), message("b4", [product("A")]))


def test_rotation_removes_old_backups(context: WorkerContext) -> None:
    settings = context.settings
    settings.backup_path.mkdir(parents=True)
    old = settings.backup_path / backup_name(settings.catalog_path, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    new = settings.backup_path / backup_name(settings.catalog_path, dt.datetime.now(dt.UTC))
    old.write_text("[]")
    new.write_text("[]")
    newer = settings.backup_path / backup_name(settings.catalog_path, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    newer.write_text("[]")
    assert rotate(context) == {"kept": [newer.name, new.name], "compressed": [], "removed": [old.name], "failed": []}
    assert new.exists() and newer.exists()




def test_a_retry_that_cannot_be_published_hands_the_batch_back_instead_of_dropping_it(
    catalog_path, redis_url  # type: ignore[no-untyped-def]
) -> None:
    from celery.exceptions import Reject

    class BrokerDown(StubTask):
        def retry(self, **kwargs: Any) -> Exception:
            return Reject("connection refused", requeue=False)  # what Celery raises then

    settings = load_settings(path=catalog_path, redis_url=redis_url, lock_timeout=1)
    redis.Redis.from_url(redis_url).set(f"lock:{lock_name(catalog_path)}", b"other", ex=30)
    with pytest.raises(Reject) as info:
        ingest_batch(BrokerDown(), WorkerContext(settings), message("b5", [product("A")]))
    assert info.value.requeue is True and info.value.reason == "connection refused"


# --- abandon(): a batch that ends without a ledger entry gives its sequence up, in Redis ------------

def test_a_batch_that_fails_for_good_gives_up_its_sequence_in_redis(catalog_path, redis_url) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(path=catalog_path, redis_url=redis_url, lock_timeout=1, max_retries=2)
    context = WorkerContext(settings)
    sequence = next_sequence(context.store.redis, settings.queue)
    redis.Redis.from_url(redis_url).set(f"lock:{lock_name(catalog_path)}", b"other", ex=30)
    with pytest.raises(BatchFailedError):
        ingest_batch(StubTask(retries=2), context, message("doomed", [product("A")], sequence))
    assert abandoned_sequences(context.store.redis, settings.queue) == [sequence]


def test_a_batch_that_will_be_retried_keeps_its_sequence(catalog_path, redis_url) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(path=catalog_path, redis_url=redis_url, lock_timeout=1, max_retries=2)
    context = WorkerContext(settings)
    sequence = next_sequence(context.store.redis, settings.queue)
    redis.Redis.from_url(redis_url).set(f"lock:{lock_name(catalog_path)}", b"other", ex=30)
    with pytest.raises(RetryRequested):
        ingest_batch(StubTask(retries=1), context, message("later", [product("A")], sequence))
    assert abandoned_sequences(context.store.redis, settings.queue) == []


def test_a_batch_rejected_as_too_large_gives_up_its_sequence(catalog_path, redis_url) -> None:  # type: ignore[no-untyped-def]
    context = WorkerContext(load_settings(path=catalog_path, redis_url=redis_url, max_batch_items=1))
    sequence = next_sequence(context.store.redis, context.settings.queue)
    result = ingest_batch(StubTask(), context, message("big", [product("A"), product("B")], sequence))
    assert result["status"] == "rejected"
    assert abandoned_sequences(context.store.redis, context.settings.queue) == [sequence]


def test_a_message_the_worker_cannot_read_gives_up_the_sequence_it_carries(context: WorkerContext) -> None:
    sequence = next_sequence(context.store.redis, context.settings.queue)
    payload = {"schema_version": 2, "batch_id": "odd", "sequence": sequence, "items": [], "unknown": 1}
    assert ingest_batch(StubTask(), context, payload)["status"] == "rejected"
    assert abandoned_sequences(context.store.redis, context.settings.queue) == [sequence]


def test_a_given_up_sequence_no_longer_holds_back_a_later_patch(context: WorkerContext) -> None:
    """The effect abandon() exists for: without it, the later patch would wait for sequence 2 forever."""
    client, queue = context.store.redis, context.settings.queue
    ingest_batch(StubTask(), context, message("seed", [product("SEED")], next_sequence(client, queue)))
    too_large_sequence = next_sequence(client, queue)
    patch_sequence = next_sequence(client, queue)
    big = load_settings(path=context.settings.path, redis_url=context.settings.redis_url, max_batch_items=1)
    ingest_batch(StubTask(), WorkerContext(big), message("big", [product("X"), product("Y")], too_large_sequence))
    result = ingest_batch(StubTask(), context, message("patch", [{"product_id": "GHOST", "category": "x"}],
                                                        patch_sequence))
    assert result["status"] == "rejected"  # not retried: nothing lower can still create GHOST


# --- final_attempt: the last attempt decides; earlier ones may wait for lower sequences ---------------

def pending_lower_sequence(context: WorkerContext) -> int:
    """A seeded catalog, and a lower sequence still without an outcome; returns the next sequence."""
    client, queue = context.store.redis, context.settings.queue
    ingest_batch(StubTask(), context, message("seed", [product("SEED")], next_sequence(client, queue)))
    next_sequence(client, queue)  # taken by a batch still in the queue
    return next_sequence(client, queue)


def test_before_the_last_attempt_a_patch_of_a_product_a_lower_batch_may_create_is_retried(
    context: WorkerContext,
) -> None:
    sequence = pending_lower_sequence(context)
    task = StubTask(retries=context.settings.max_retries - 1)
    with pytest.raises(RetryRequested):
        ingest_batch(task, context, message("early", [{"product_id": "LATE", "category": "x"}], sequence))
    assert "LATE" in str(task.retried_with[0]["exc"])


def test_on_the_last_attempt_such_a_patch_is_rejected_and_recorded_not_failed(context: WorkerContext) -> None:
    sequence = pending_lower_sequence(context)
    task = StubTask(retries=context.settings.max_retries)
    result = ingest_batch(task, context, message("last", [{"product_id": "LATE", "category": "x"}], sequence))
    assert result["status"] == "rejected" and task.retried_with == []
    assert result["errors"] and {error["product_id"] for error in result["errors"]} == {"LATE"}
    rejection = find_rejection(context.store.redis, context.settings.queue, "last")
    assert rejection is not None and rejection.source == "tests"


# --- what the worker says: one line per step, naming batch, source and outcome --------------------

import logging  # noqa: E402
import re  # noqa: E402


def worker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "catalog.worker"]


def test_an_applied_batch_is_logged_when_it_starts_and_when_it_ends(
    context: WorkerContext, caplog: pytest.LogCaptureFixture
) -> None:
    sequence = next_sequence(context.store.redis, context.settings.queue)
    with caplog.at_level(logging.INFO, logger="catalog.worker"):
        ingest_batch(StubTask(retries=1), context, message("b1", [product("A"), product("B")], sequence))
    assert worker_lines(caplog) == [
        "batch b1 from tests: 2 record(s), attempt 2",
        f"batch b1 from tests applied (sequence {sequence}): 2 created, 0 updated, 0 unchanged, 0 superseded field(s)",
    ]


def test_a_batch_rejected_as_too_large_is_recorded_with_its_source_and_submission_time(
    catalog_path, redis_url, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    context = WorkerContext(load_settings(path=catalog_path, redis_url=redis_url, max_batch_items=1))
    payload = message("big", [product("A"), product("B")])
    with caplog.at_level(logging.WARNING, logger="catalog.worker"):
        result = ingest_batch(StubTask(), context, payload)
    rejection = find_rejection(context.store.redis, context.settings.queue, "big")
    assert rejection is not None and rejection.source == "tests"
    assert rejection.submitted_at == BatchMessage.model_validate(payload).submitted_at
    assert worker_lines(caplog) == [f"batch big from tests rejected: 1 problem(s), first: {result['errors'][0]['msg']}"]


def test_a_message_it_cannot_read_is_recorded_as_from_an_unknown_source(context: WorkerContext) -> None:
    ingest_batch(StubTask(), context, {"schema_version": 2, "batch_id": "odd", "items": [], "extra": 1})
    rejection = find_rejection(context.store.redis, context.settings.queue, "odd")
    assert rejection is not None and (rejection.source, rejection.submitted_at) == ("unknown", None)
    [error] = rejection.result.errors
    assert (error.loc, error.msg) == ("extra", "invalid batch message: Extra inputs are not permitted")


def test_a_retry_and_a_final_failure_are_logged_with_the_reason(
    catalog_path, redis_url, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    settings = load_settings(path=catalog_path, redis_url=redis_url, lock_timeout=1, max_retries=3,
                             retry_backoff_max=30)
    redis.Redis.from_url(redis_url).set(f"lock:{lock_name(catalog_path)}", b"other", ex=30)
    with caplog.at_level(logging.WARNING, logger="catalog.worker"):
        with pytest.raises(RetryRequested):
            ingest_batch(StubTask(retries=2), WorkerContext(settings), message("b3", [product("A")]))
        with pytest.raises(BatchFailedError):
            ingest_batch(StubTask(retries=3), WorkerContext(settings), message("b3", [product("A")]))
    retry, failure = worker_lines(caplog)
    assert re.fullmatch(r"batch b3 from tests will retry in \d+(\.\d+)?s: another writer held the lock .*", retry)
    assert re.fullmatch(r"batch b3 from tests failed after 4 attempts: another writer held the lock .*", failure)


def test_a_retry_that_cannot_be_published_is_logged(
    catalog_path, redis_url, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    from celery.exceptions import Reject

    class BrokerDown(StubTask):
        def retry(self, **kwargs: Any) -> Exception:
            return Reject("connection refused", requeue=False)

    settings = load_settings(path=catalog_path, redis_url=redis_url, lock_timeout=1)
    redis.Redis.from_url(redis_url).set(f"lock:{lock_name(catalog_path)}", b"other", ex=30)
    with caplog.at_level(logging.WARNING, logger="catalog.worker"), pytest.raises(Reject):
        ingest_batch(BrokerDown(), WorkerContext(settings), message("b6", [product("A")]))
    last = worker_lines(caplog)[-1]  # today Reject's args tuple shows: ('connection refused', False)
    assert re.fullmatch(r"batch b6: could not schedule the retry \(.*connection refused.*\); handing it back", last)


def test_rotation_logs_one_line_with_what_it_kept_compressed_and_deleted(context: WorkerContext, caplog: pytest.LogCaptureFixture) -> None:
    settings = context.settings
    settings.backup_path.mkdir(parents=True)
    old = [backup_name(settings.catalog_path, dt.datetime(2020, 1, day, tzinfo=dt.UTC)) for day in (1, 2)]
    now = dt.datetime.now(dt.UTC)
    recent = [backup_name(settings.catalog_path, now - dt.timedelta(minutes=m)) for m in (2, 1)]
    for name in old + recent:
        (settings.backup_path / name).write_text("[]")
    with caplog.at_level(logging.INFO, logger="catalog.worker"):
        rotate(context)
    assert worker_lines(caplog) == [f"backup rotation: kept 2 ({', '.join(recent)}); compressed 0; "
                                    f"deleted 2 ({', '.join(old)}); 4 bytes kept"]
