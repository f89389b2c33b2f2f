"""The change stream: one event per applied batch, with old and new values, never lost, never invented."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest
import redis

from catalog_core.events import events_key, read_events
from catalog_core.settings import Settings
from devtools.chaos.events_check import replay as replay_events
from schemas.events import ChangeEvent
from tests.helpers import product
from worker import outbox
from worker.catalog_file import read_catalog
from worker.state import read_state, state_path
from worker.store import CatalogStore


def events(settings: Settings) -> list[ChangeEvent]:
    client = redis.Redis.from_url(settings.redis_url)
    found = [event for _, event in read_events(client, settings.queue)]
    assert all(event is not None for event in found)
    return found  # type: ignore[return-value]


def replay(start: list[dict[str, Any]], stream: list[ChangeEvent]) -> dict[str, dict[str, Any]]:
    """What the events say (the chaos check's model, apart from the worker), each ``event_id`` once."""
    seen: set[str] = set()
    once = [event for event in stream if not (event.event_id in seen or seen.add(event.event_id))]
    return replay_events(start, once)


def by_id(products: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["product_id"]: p for p in products}


def test_each_applied_batch_publishes_one_event_with_old_and_new_values(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A", category="Tours")], "create", source="feed-1")
    store.apply([{"product_id": "A", "category": "Museums"}], "patch", source="feed-2")
    store.apply([{"product_id": "A", "category": "Museums"}], "same-again")  # unchanged: no event
    store.apply([{"product_id": "GHOST", "category": "x"}], "rejected")  # rejected: no event
    created, patched = events(settings)
    assert (created.batch_id, created.source, created.changes[0].created) == ("create", "feed-1", True)
    [change] = patched.changes
    assert (patched.batch_id, patched.source, change.product_id, change.created) == ("patch", "feed-2", "A", False)
    assert [(f.field, f.old, f.new) for f in change.fields] == [("category", "Tours", "Museums")]
    assert patched.backup is not None and patched.sequence > created.sequence and patched.fence > created.fence
    # The backup the event names holds the catalog from before the batch.
    assert by_id(read_catalog(settings.backup_path / patched.backup))["A"]["category"] == "Tours"


def test_an_event_says_when_its_commit_was_written(settings: Settings) -> None:
    store = CatalogStore(settings)
    before = time.time()
    store.apply([product("A")], "b1")
    after = time.time()
    [event] = events(settings)
    assert before <= event.committed_at <= after


def test_events_replayed_over_the_starting_catalog_give_the_catalog(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A"), product("B")], "b1")
    start = read_catalog(settings.catalog_path)
    store.apply([{"product_id": "A", "category": "x"}, product("C")], "b2")
    store.apply([{"product_id": "B", "inclusions": []}, {"product_id": "C", "duration_hours": 2.5}], "b3")
    store.apply([{"product_id": "A", "category": None}], "b4")
    after_b1 = [e for e in events(settings) if e.batch_id != "b1"]
    assert replay(start, after_b1) == by_id(read_catalog(settings.catalog_path))


@pytest.mark.parametrize("next_writer", ["the same writer", "another writer"])
def test_events_a_redis_failure_held_back_are_published_by_the_next_write(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, next_writer: str
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")

    def redis_down(*_args: object) -> None:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(outbox, "publish", redis_down)
    store.apply([{"product_id": "A", "category": "held back"}], "b2")  # committed; its event is not out
    monkeypatch.undo()
    assert [e.batch_id for e in events(settings)] == ["b1"]
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and any(entry.get("events") for entry in state.journal)  # kept in the outbox
    # The same writer knows its b1 event was taken, not its b2 event: it must look, as another writer does.
    writer = store if next_writer == "the same writer" else CatalogStore(settings)
    writer.apply([product("B")], "b3")  # publishes b2's event, then its own
    assert [e.batch_id for e in events(settings)] == ["b1", "b2", "b3"]
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and [e["batch_id"] for entry in state.journal for e in entry.get("events", [])] == ["b3"]


def hand_edit_held_back_event(settings: Settings, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> dict[str, Any]:
    """Commit batch b1 with Redis failing for its event (so it waits in the state's journal), then
    hand-edit that event in the state file; the edited event."""
    def redis_down(*_args: object) -> None:
        raise redis.ConnectionError("Redis went away")

    with monkeypatch.context() as patched:
        patched.setattr(outbox, "publish", redis_down)
        CatalogStore(settings).apply([product("A")], "b1")
    path = state_path(settings.catalog_path)
    record = orjson.loads(path.read_bytes())
    [event] = [e for entry in record["journal"] for e in entry.get("events", [])]
    event.update(changes)
    # pydantic-core parses the state (orjson cannot read an integer beyond 64 bits): write it as text
    path.write_text(json.dumps(record))
    return event


def published_data(settings: Settings) -> list[bytes]:
    client = redis.Redis.from_url(settings.redis_url)
    return [fields[b"data"] for _, fields in client.xrange(events_key(settings.queue))]


def test_a_held_back_event_a_hand_edit_made_odd_is_published_as_it_is_and_writes_go_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = hand_edit_held_back_event(settings, monkeypatch, committed_at={"not": "a time"})  # only ids are checked
    CatalogStore(settings).apply([product("B")], "b2")  # publishes b1's event first, as it is
    published = published_data(settings)
    assert published[0] == orjson.dumps(event) and len(published) == 2


def test_a_held_back_event_that_is_no_longer_json_is_dropped_with_a_warning_and_writes_go_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    event = hand_edit_held_back_event(settings, monkeypatch, sequence=10**30)  # beyond what JSON writers take
    assert CatalogStore(settings).apply([product("B")], "b2").status.value == "applied"
    assert f"dropped change event {event['event_id']}" in caplog.text
    assert [e.batch_id for e in events(settings)] == ["b2"]
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and [e["batch_id"] for entry in state.journal for e in entry.get("events", [])] == ["b2"]


def test_an_event_already_published_is_not_published_again(settings: Settings) -> None:
    store = CatalogStore(settings)
    for n in range(5):
        store.apply([product(f"P{n}")], f"b{n}")
    assert [e.batch_id for e in events(settings)] == [f"b{n}" for n in range(5)]


def test_no_change_stream_when_its_length_is_zero(settings: Settings) -> None:
    quiet = settings.model_copy(update={"events_maxlen": 0})
    CatalogStore(quiet).apply([product("A")], "b1")
    assert events(quiet) == []


def test_a_removed_product_has_an_event_and_the_replay_removes_it_too(settings: Settings) -> None:
    from worker.write_attempt import Planned

    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    start = read_catalog(settings.catalog_path)
    store.apply([product("B"), {"product_id": "A", "category": "x"}], "b2")
    result = store.apply_planned(lambda _state: Planned([{"product_id": "A", "category": "y"}], ["B"]), "undo", "test")
    assert (result.status.value, result.deleted) == ("applied", 1)
    removal = [c for e in events(settings) for c in e.changes if c.deleted]
    assert [c.product_id for c in removal] == ["B"] and all(f.new_absent for f in removal[0].fields)
    assert replay(start, [e for e in events(settings) if e.batch_id != "b1"]) == by_id(read_catalog(settings.catalog_path))
    assert "B" not in by_id(read_catalog(settings.catalog_path))
