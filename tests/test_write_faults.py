"""Deterministic fault injection: the k-th Redis command of a delivery fails, for every k.

One delivery of a batch (worker.tasks.ingest_batch, with Celery's retry stood in for) runs
against a real Redis and a real catalog, through a client whose k-th command raises a
ConnectionError, either before the server ran it or after (the reply lost on the way back,
the nastier case: the server did the work). For every k in the write path, before and after
the commit point, the batch must end with exactly one correct outcome, and the catalog must
equal a reference computed here by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import redis

from catalog_core.errors import BatchFailedError
from catalog_core.rejections import find_rejection
from catalog_core.sequence import next_sequence
from catalog_core.settings import Settings, load_settings
from schemas import BatchMessage
from tests.helpers import product
from worker.catalog_file import serialize_catalog
from worker.group_commit import GroupCommitter
from worker.state import read_state, state_path
from worker.store import CatalogStore
from worker.tasks import ingest_batch

pytestmark = pytest.mark.slow

MAX_RETRIES = 3
SEED = [product("KEEP"), product("PATCHED", category="old category")]
GOOD_BATCH = [product("NEW", category="new"), {"product_id": "PATCHED", "category": "new category"}]
BAD_BATCH = [product("NEW"), {"product_id": "PATCHED", "pricing": [{"tier_name": "Adult", "price_aed": -5}]}]


class InjectedFault(redis.ConnectionError):
    pass


class FailingRedis(redis.Redis):
    """A real client whose ``fail_at``-th command (from 1, main thread only) raises once.

    ``when="before"``: the command never reaches the server. ``when="after"``: the server ran
    it and the reply was lost. A pipeline counts as one command. The lock's renewal thread
    is neither counted nor failed, so counts do not depend on timing.
    """

    def __init__(self, url: str, fail_at: int | None, when: str) -> None:
        pool = redis.ConnectionPool.from_url(url, socket_timeout=10)
        super().__init__(connection_pool=pool)
        self.fail_at, self.when, self.count, self.names = fail_at, when, 0, []  # type: ignore[var-annotated]
        self._main = threading.main_thread()

    def _tick(self, name: str, run: Callable[[], Any]) -> Any:
        if threading.current_thread() is not self._main:
            return run()
        self.count += 1
        self.names.append(name)
        if self.count == self.fail_at and self.when == "before":
            raise InjectedFault(f"injected fault before command {self.count} ({name})")
        result = run()
        if self.count == self.fail_at:
            raise InjectedFault(f"injected fault after command {self.count} ({name}): its reply was lost")
        return result

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self._tick(str(args[0]), lambda: super(FailingRedis, self).execute_command(*args, **options))

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute
        pipe.execute = lambda raise_on_error=True: self._tick("PIPELINE", lambda: execute(raise_on_error))
        return pipe


class RetryRequested(Exception):
    pass


class StubTask:
    """Celery's bound task as ingest_batch sees it: the request, and a retry that raises."""

    def __init__(self, task_id: str) -> None:
        self.request = SimpleNamespace(id=task_id, retries=0)

    def retry(self, **_: Any) -> RetryRequested:
        return RetryRequested()


def deliver(context: Any, payload: dict[str, Any]) -> tuple[str, dict[str, Any] | str]:
    """Deliver until a final outcome, the way Celery retries: ('result', dict) or ('failed', reason)."""
    task = StubTask(payload["batch_id"])
    for attempt in range(MAX_RETRIES + 1):
        task.request.retries = attempt
        try:
            return "result", ingest_batch(task, context, payload)
        except RetryRequested:
            continue
        except BatchFailedError as exc:
            return "failed", str(exc)
    raise AssertionError("a retry was asked for after the last attempt")


def reference_catalog(batch: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The seed with ``batch`` applied once, by hand: a patch replaces top-level keys, a new product is appended."""
    products = [dict(p) for p in SEED]
    for record in batch or []:
        existing = next((p for p in products if p["product_id"] == record["product_id"]), None)
        if existing is None:
            products.append({**record})
        else:
            existing.update(record)
    return products


def run_one(tmp_path: Path, redis_url: str, batch: list[dict[str, Any]], fail_at: int | None,
            when: str) -> tuple[tuple[str, Any], FailingRedis, Settings]:
    admin = redis.Redis.from_url(redis_url)
    admin.flushall()
    admin.script_flush()  # every run loads the lock's scripts again: the same commands each time
    catalog = tmp_path / f"{when}-{fail_at}" / "products.json"
    catalog.parent.mkdir(parents=True)
    catalog.write_bytes(serialize_catalog(SEED))
    settings = load_settings(path=catalog, redis_url=redis_url, lock_expire=3, lock_timeout=20,
                             max_retries=MAX_RETRIES)
    client = FailingRedis(redis_url, fail_at, when)
    store = CatalogStore(settings, client_factory=lambda _: client)
    context = SimpleNamespace(settings=settings, store=store, committer=GroupCommitter(store.apply_group, 1))
    sequence = next_sequence(redis.Redis.from_url(redis_url), settings.queue)
    payload = BatchMessage(batch_id="feed-1", source="faults", items=batch, sequence=sequence).model_dump(mode="json")
    return deliver(context, payload), client, settings


def commands_in_a_clean_delivery(tmp_path: Path, redis_url: str, batch: list[dict[str, Any]]) -> int:
    (kind, _), client, _ = run_one(tmp_path / "clean", redis_url, batch, None, "before")
    assert kind == "result"
    return client.count


def without_nulls(value: Any) -> Any:
    """The catalog writes every schema field (absent ones as null); the reference names only what it sets."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None and (k, v) != ("active", True)}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def stored(settings: Settings) -> list[dict[str, Any]]:
    return without_nulls(orjson.loads(settings.catalog_path.read_bytes()))  # type: ignore[no-any-return]


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_applied_batch_has_one_outcome_whichever_redis_command_fails(
    tmp_path: Path, redis_url: str, when: str
) -> None:
    total = commands_in_a_clean_delivery(tmp_path, redis_url, GOOD_BATCH)
    assert total >= 5, "the write path should use Redis for the lock, the fence and the counters"
    for fail_at in range(1, total + 1):
        (kind, outcome), client, settings = run_one(tmp_path, redis_url, GOOD_BATCH, fail_at, when)
        label = f"fault {when} command {fail_at} of {total} ({client.names[fail_at - 1]})"
        assert kind == "result", f"{label}: the batch failed instead of being retried: {outcome}"
        assert isinstance(outcome, dict)
        if outcome["status"] == "duplicate":  # committed, then the fault came: the redelivery says so
            assert outcome["original"]["status"] == "applied" and outcome["content_matches"] is True, label
        else:
            assert (outcome["status"], outcome["created"], outcome["updated"]) == ("applied", 1, 1), label
        assert stored(settings) == without_nulls(reference_catalog(GOOD_BATCH)), label
        state = read_state(state_path(settings.catalog_path))
        assert state is not None and list(state.ledger) == ["feed-1"], label
        assert state.ledger["feed-1"]["status"] == "applied", label


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_rejected_batch_is_rejected_and_recorded_whichever_redis_command_fails(
    tmp_path: Path, redis_url: str, when: str
) -> None:
    total = commands_in_a_clean_delivery(tmp_path, redis_url, BAD_BATCH)
    for fail_at in range(1, total + 1):
        (kind, outcome), client, settings = run_one(tmp_path, redis_url, BAD_BATCH, fail_at, when)
        label = f"fault {when} command {fail_at} of {total} ({client.names[fail_at - 1]})"
        assert kind == "result", f"{label}: the batch failed instead of being retried: {outcome}"
        assert isinstance(outcome, dict)
        final = outcome["original"] if outcome["status"] == "duplicate" else outcome
        assert final["status"] == "rejected", label
        assert stored(settings) == without_nulls(reference_catalog(None)), label  # nothing of it written
        rejection = find_rejection(redis.Redis.from_url(redis_url), settings.queue, "feed-1")
        assert rejection is not None and rejection.result.status == "rejected", f"{label}: not in `catalog rejected`"
