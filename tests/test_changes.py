"""worker.changes: the change stream's events are exactly what the event schema makes of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog_core.events import EncodedEvent, encoded_array
from schemas.events import ChangeEvent, FieldChange
from worker.changes import change_event, field_changes

VALUES = st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=4) | st.lists(st.integers(0, 3), max_size=2)
PRODUCTS = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), VALUES, max_size=4)


@settings(max_examples=200, deadline=None)
@given(before=st.none() | PRODUCTS, after=PRODUCTS)
def test_field_changes_name_every_field_that_differs_once_with_its_old_and_new_value(
    before: dict[str, Any] | None, after: dict[str, Any]
) -> None:
    changes = {change.field: change for change in field_changes(before, after)}
    old = before or {}
    for name in set(old) | set(after):  # the reference: a field changed iff absent on one side or unequal
        differs = (name in old) != (name in after) or old.get(name) != after.get(name)
        assert (name in changes) == differs
        if differs:
            assert changes[name] == FieldChange(field=name, old=old.get(name), new=after.get(name),
                                                old_absent=name not in old, new_absent=name not in after)


@settings(max_examples=200, deadline=None)
@given(previous=st.dictionaries(st.sampled_from(["P1", "P2"]), PRODUCTS), after=st.lists(PRODUCTS, max_size=3),
       removed=st.dictionaries(st.sampled_from(["P3"]), PRODUCTS), backup=st.booleans())
def test_an_event_built_as_json_values_is_exactly_the_dump_of_its_schema(
    previous: dict[str, dict[str, Any]], after: list[dict[str, Any]], removed: dict[str, dict[str, Any]],
    backup: bool,
) -> None:
    changed = {f"P{i + 1}": {**product, "product_id": f"P{i + 1}"} for i, product in enumerate(after)}
    removed = {product_id: {**product, "product_id": product_id} for product_id, product in removed.items()}
    event = change_event(7, "b1", "feed", 3, Path("products.json.bak") if backup else None, changed, previous, removed)
    assert ChangeEvent.model_validate(event).model_dump(mode="json") == event
    for change in event["changes"]:
        if not change["deleted"]:
            before = previous.get(change["product_id"])
            assert change["created"] == (before is None)
            assert [FieldChange(**f) for f in change["fields"]] == field_changes(before, changed[change["product_id"]])


@settings(max_examples=200, deadline=None)
@given(previous=st.dictionaries(st.sampled_from(["P1", "P2"]), PRODUCTS), after=st.lists(PRODUCTS, max_size=3),
       backup=st.booleans(), batch_id=st.text(min_size=1, max_size=8), source=st.text(min_size=1, max_size=8),
       committed_at=st.floats(0, 4e9) | st.just(0.0))
def test_an_event_serialized_when_merged_is_byte_for_byte_the_dump_of_the_event_as_committed(
    previous: dict[str, dict[str, Any]], after: list[dict[str, Any]], backup: bool, batch_id: str, source: str,
    committed_at: float,
) -> None:
    changed = {f"P{i + 1}": {**product, "product_id": f"P{i + 1}"} for i, product in enumerate(after)}
    event = change_event(7, batch_id, source, 3, Path("products.json.bak") if backup else None, changed, previous, {})
    encoded = EncodedEvent(event)  # serialized at merge time, committed_at still open
    encoded.committed_at = committed_at
    # The reference: the dict as committed, dumped whole (what the stream and the record held before).
    assert encoded.data == orjson.dumps({**event, "committed_at": committed_at})
    assert (encoded.event_id, encoded.fence, encoded.batch_id) == (event["event_id"], 7, batch_id)


def test_an_event_read_back_from_a_commit_record_keeps_its_bytes_and_committed_at() -> None:
    event = change_event(7, "b1", "feed", 3, None, {"P1": {"product_id": "P1", "a": 1}}, {}, {})
    committed = orjson.loads(orjson.dumps({**event, "committed_at": 1234.5}))  # as the state file holds it
    assert EncodedEvent(committed).data == orjson.dumps(committed)
    odd = {"event_id": "7-3", "fence": 7, "batch_id": "b1"}  # no committed_at at all: dumped as it is
    assert EncodedEvent(odd).data == orjson.dumps(odd)


@given(committed_ats=st.lists(st.floats(0, 4e9) | st.just(0.0), max_size=5), odd=st.booleans())
def test_a_commits_events_joined_in_one_copy_are_byte_for_byte_the_dump_of_their_list(
    committed_ats: list[float], odd: bool
) -> None:
    events = []
    for number, committed_at in enumerate(committed_ats):
        event = change_event(7, f"b{number}", "feed", number + 1, None,
                             {"P1": {"product_id": "P1", "a": number}}, {"P1": {"product_id": "P1", "a": -1}}, {})
        encoded = EncodedEvent(event)
        encoded.committed_at = committed_at
        events.append((encoded, {**event, "committed_at": committed_at}))
    if odd:  # read back from a record without committed_at: dumped as it is
        plain = {"event_id": "7-9", "fence": 7, "batch_id": "b9"}
        events.append((EncodedEvent(plain), plain))
    assert encoded_array([encoded for encoded, _ in events]) == orjson.dumps([dumped for _, dumped in events])
