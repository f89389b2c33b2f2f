"""worker.state: sequences, the ledger window and the state file's format."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from catalog_core.errors import CatalogCorruptError
from schemas import BatchResult, BatchStatus, RecordError
from worker.state import CatalogState, parse_state, read_state, serialize_state, state_path

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)


def result(batch_id: str, sequence: int | None, status: BatchStatus = BatchStatus.APPLIED) -> BatchResult:
    return BatchResult(batch_id=batch_id, status=status, created=1, sequence=sequence)


def test_the_state_file_sits_beside_the_catalog_and_is_not_json_named() -> None:
    assert state_path(Path("/data/products.json")) == Path("/data/products.json.state")


def test_completed_sequences_advance_the_watermark_only_without_gaps() -> None:
    state = CatalogState()
    for sequence in (1, 2, 4, 5):
        state.complete(sequence)
    assert (state.watermark, state.completed) == (2, [4, 5])
    state.complete(3)
    assert (state.watermark, state.completed) == (5, [])
    assert state.is_complete(4) and not state.is_complete(6)


def test_lower_pending_sees_gaps_below_a_sequence() -> None:
    state = CatalogState()
    state.complete(1)
    state.complete(3)
    assert state.lower_pending(4)  # 2 has no outcome yet
    assert not state.lower_pending(2)
    state.complete(2)
    assert not state.lower_pending(4)


def test_the_ledger_remembers_outcomes_and_gives_back_the_original() -> None:
    state = CatalogState()
    state.record(result("b1", 1), NOW)
    original = state.original("b1")
    assert original is not None and original.status == BatchStatus.APPLIED and original.sequence == 1
    assert state.original("unknown") is None
    assert state.watermark == 1


def test_the_ledger_forgets_ids_beyond_its_count_window_oldest_first() -> None:
    state = CatalogState()
    for n in range(5):
        state.record(result(f"b{n}", n + 1), NOW)
    state.trim_ledger(NOW, keep_days=30, keep_ids=3)
    assert list(state.ledger) == ["b2", "b3", "b4"]


def test_the_ledger_forgets_ids_older_than_its_day_window() -> None:
    state = CatalogState()
    state.record(result("old", 1), NOW - dt.timedelta(days=31))
    state.record(result("new", 2), NOW)
    state.trim_ledger(NOW, keep_days=30, keep_ids=10)
    assert list(state.ledger) == ["new"]


def test_the_ledger_keeps_only_the_first_errors_of_a_rejection() -> None:
    state = CatalogState()
    errors = [RecordError(index=i, msg="bad") for i in range(100)]
    rejected = BatchResult(batch_id="r", status=BatchStatus.REJECTED, errors=errors, sequence=1)
    state.record(rejected, NOW)
    original = state.original("r")
    assert original is not None and len(original.errors) == 20


def test_a_state_survives_serialization(tmp_path: Path) -> None:
    state = CatalogState(fence=7, catalog_sha256="ab" * 32, versions={"A": {"pricing": 3}})
    state.record(result("b1", 1), NOW)
    path = tmp_path / "products.json.state"
    path.write_bytes(serialize_state(state))
    assert read_state(path) == state


def test_an_unreadable_state_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogCorruptError, match="state file is unreadable"):
        parse_state(b"{", tmp_path / "x.state")
    with pytest.raises(CatalogCorruptError, match="unknown state format"):
        parse_state(b'{"format": 99}', tmp_path / "x.state")
    assert read_state(tmp_path / "absent.state") is None


def test_a_gap_that_never_closes_does_not_grow_the_state_forever() -> None:
    from worker.state import OPEN_SEQUENCES_KEPT

    state = CatalogState()
    for sequence in range(2, OPEN_SEQUENCES_KEPT + 50):  # 1 never completes
        state.complete(sequence)
    assert len(state.completed) <= OPEN_SEQUENCES_KEPT
    assert state.watermark > 1 and not state.lower_pending(state.watermark + 1)


# --- edges that mutation testing showed untested (tools/mutation.py) ---------------------------

def test_the_previous_state_sits_beside_the_catalog_too() -> None:
    from worker.state import previous_state_path

    assert previous_state_path(Path("/data/products.json")) == Path("/data/products.json.state.prev")


def test_completing_a_sequence_already_complete_or_none_changes_nothing() -> None:
    state = CatalogState()
    state.complete(None)
    state.complete(1)
    state.complete(1)
    assert (state.watermark, state.completed) == (1, [])


def test_is_complete_is_true_at_the_watermark_and_for_completed_sequences_only() -> None:
    state = CatalogState()
    for sequence in (1, 2, 4, 5):
        state.complete(sequence)
    assert state.is_complete(2) and state.is_complete(4) and state.is_complete(5)
    assert not state.is_complete(3) and not state.is_complete(6)


def test_lower_pending_is_false_when_the_sequence_itself_is_the_only_one_completed_above_a_gap_free_watermark() -> None:
    state = CatalogState()
    state.complete(1)
    state.complete(3)
    assert state.lower_pending(3)  # 2 is still open; 3's own completion does not fill it
    loaded = CatalogState(watermark=1, completed=[2, 3])  # as a state file may hold it
    assert not loaded.lower_pending(4)
    assert loaded.lower_pending(5)


def test_past_the_open_sequence_limit_the_oldest_gap_is_given_up_and_the_others_kept() -> None:
    from worker.state import OPEN_SEQUENCES_KEPT as kept

    state = CatalogState()
    evens = list(range(2, 2 * kept + 1, 2))  # every odd sequence is a gap
    for sequence in evens:
        state.complete(sequence)
    assert (state.watermark, state.completed) == (0, evens)
    state.complete(2 * kept + 2)
    assert state.watermark == 2  # gap 1 given up, gap 3 still open
    assert state.completed == list(range(4, 2 * kept + 3, 2))
    assert state.is_complete(1) and not state.is_complete(3) and state.lower_pending(4)


def test_a_ledger_entry_holds_the_outcome_and_the_backup_name_in_plain_json_values_and_nothing_else() -> None:
    from schemas import SupersededField

    now = NOW.replace(microsecond=123456)
    applied = BatchResult(batch_id="b1", status=BatchStatus.APPLIED, created=1, updated=2, unchanged=3, sequence=4,
                          fence=5, backup="/x/backup.json",
                          superseded=[SupersededField(index=0, product_id="A", field=f, by_sequence=9) for f in "xy"])
    state = CatalogState()
    state.record(applied, now)
    entry = state.ledger["b1"]
    assert entry == {"status": "applied", "created": 1, "updated": 2, "unchanged": 3, "sequence": 4, "fence": 5,
                     "superseded_fields": 2, "backup": "backup.json", "recorded_at": round(now.timestamp(), 3)}
    assert type(entry["status"]) is str and entry["recorded_at"] != round(now.timestamp(), 4)
    state.record(BatchResult(batch_id="r", status=BatchStatus.REJECTED, sequence=6,
                             errors=[RecordError(index=0, product_id="A", loc="pricing", msg="bad")]),
                 now)
    assert state.ledger["r"]["errors"] == [{"index": 0, "product_id": "A", "loc": "pricing", "msg": "bad"}]
    assert all(type(value) is dict for value in state.ledger["r"]["errors"])


def test_recording_a_batch_id_again_makes_it_the_newest_entry() -> None:
    state = CatalogState()
    for batch_id, sequence in (("b1", 1), ("b2", 2), ("b1", 3)):
        state.record(result(batch_id, sequence), NOW)
    state.trim_ledger(NOW, keep_days=30, keep_ids=2)
    assert list(state.ledger) == ["b2", "b1"]
    state.record(result("b3", 4), NOW)
    state.trim_ledger(NOW, keep_days=30, keep_ids=2)
    assert list(state.ledger) == ["b1", "b3"]


def test_the_day_window_keeps_an_entry_exactly_its_age_and_forgets_one_ten_seconds_older() -> None:
    state = CatalogState()
    state.record(result("too-old", 1), NOW - dt.timedelta(days=30, seconds=10))
    state.record(result("just-in", 2), NOW - dt.timedelta(days=30))
    state.record(result("recent", 3), NOW - dt.timedelta(days=1))
    state.record(result("now", 4), NOW)
    state.trim_ledger(NOW, keep_days=30, keep_ids=100)
    assert list(state.ledger) == ["just-in", "recent", "now"]


def test_an_unreadable_state_file_is_named_with_what_was_wrong(tmp_path: Path) -> None:
    path = tmp_path / "products.json.state"
    path.write_bytes(b'{"format": 99}')
    with pytest.raises(CatalogCorruptError) as info:
        read_state(path)
    message = str(info.value)
    assert str(path) in message and "unknown state format '99'" in message
    assert "field versions are then lost" in message
    with pytest.raises(CatalogCorruptError, match=r"Input should be an object"):
        parse_state(b"[1, 2]", path)
