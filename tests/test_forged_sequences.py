"""A message is hostile input: a sequence the counter never issued is refused, and cannot break the counter."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis

from catalog_core.rejections import find_rejection
from catalog_core.sequence import issued_ceiling, next_sequence, sequence_key
from catalog_core.settings import Settings
from tests.helpers import product
from worker.app import WorkerContext
from worker.state import read_state, state_path
from worker.store import CatalogStore
from worker.tasks import ingest_batch


class StubTask:
    def __init__(self, task_id: str) -> None:
        self.request = SimpleNamespace(id=task_id, retries=0)


def message(batch_id: str, items: list[Any], sequence: int) -> dict[str, Any]:
    return {"schema_version": 2, "batch_id": batch_id, "source": "forger", "items": items, "sequence": sequence,
            "submitted_at": "2026-11-29T10:00:00Z"}


def test_a_sequence_above_the_counter_is_rejected_and_the_counter_stays_an_integer(settings: Settings) -> None:
    context = WorkerContext(settings)
    CatalogStore(settings).apply([product("A")], "seed")
    forged = ingest_batch(StubTask("forged"), context, message("forged", [{"product_id": "A", "category": "x"}],
                                                               2**52))
    assert forged["status"] == "rejected"
    assert "never issued" in forged["errors"][0]["msg"]
    client = redis.Redis.from_url(settings.redis_url)
    assert find_rejection(client, settings.queue, "forged") is not None
    # Later batches are unaffected: they take sequences, apply, and can write the field the forger aimed at.
    honest = next_sequence(client, settings.queue)
    assert honest < 2**52 and client.get(sequence_key(settings.queue)) == str(honest).encode()
    result = ingest_batch(StubTask("honest"), context, message("honest", [{"product_id": "A", "category": "y"}],
                                                               honest))
    assert result["status"] == "applied"
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and max(state.versions["A"].values()) == honest


def test_a_sequence_beyond_two_to_the_53_is_rejected_as_an_invalid_message(settings: Settings) -> None:
    result = ingest_batch(StubTask("huge"), WorkerContext(settings), message("huge", [product("B")], 2**62))
    assert result["status"] == "rejected" and result["errors"][0]["loc"] == "sequence"
    assert issued_ceiling(redis.Redis.from_url(settings.redis_url), settings.queue) < 2**53


def test_a_forged_sequence_in_an_unreadable_message_is_not_given_up_into_the_state(settings: Settings) -> None:
    context = WorkerContext(settings)
    CatalogStore(settings).apply([product("A")], "seed")
    bad = {"batch_id": "bad", "sequence": 2**52, "items": "not a list"}
    assert ingest_batch(StubTask("bad"), context, bad)["status"] == "rejected"
    CatalogStore(settings).apply([product("C")], "after")
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and state.sequence_high < 2**52


def test_a_forged_member_of_the_abandoned_set_does_not_drag_the_ordering_ahead(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "seed")
    client = redis.Redis.from_url(settings.redis_url)
    client.sadd(f"{settings.queue}:sequence:abandoned", 2**52)  # pushed by hand
    store.apply([product("B")], "next")
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and state.sequence_high < 2**52


def test_a_message_over_the_byte_limit_is_rejected_by_the_worker_too(settings: Settings) -> None:
    small = settings.model_copy(update={"max_batch_bytes": 2048})
    context = WorkerContext(small)
    sequence = next_sequence(redis.Redis.from_url(settings.redis_url), settings.queue)
    big = [product(f"BIG-{n}", description_long="x" * 200) for n in range(20)]
    result = ingest_batch(StubTask("big"), context, message("big", big, sequence))
    assert result["status"] == "rejected" and "CATALOG_MAX_BATCH_BYTES" in result["errors"][0]["msg"]


def test_a_sequence_below_a_ceiling_already_seen_is_accepted_without_asking_redis_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import store as store_module

    store = CatalogStore(settings)
    first = next_sequence(store.redis, settings.queue)
    second = next_sequence(store.redis, settings.queue)
    asked: list[int] = []
    real = store_module.issued_ceiling
    monkeypatch.setattr(store_module, "issued_ceiling", lambda *args: asked.append(1) or real(*args))
    assert store.sequence_issued(second) == (True, second) and len(asked) == 1
    assert store.sequence_issued(first) == (True, second) and len(asked) == 1  # the counter only grows
    assert store.sequence_issued(2**52)[0] is False and len(asked) == 2  # above it: Redis decides
