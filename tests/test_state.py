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
    state.record(result("b1", 1), NOW, keep_days=30, keep_ids=10)
    original = state.original("b1")
    assert original is not None and original.status == BatchStatus.APPLIED and original.sequence == 1
    assert state.original("unknown") is None
    assert state.watermark == 1


def test_the_ledger_forgets_ids_beyond_its_count_window_oldest_first() -> None:
    state = CatalogState()
    for n in range(5):
        state.record(result(f"b{n}", n + 1), NOW, keep_days=30, keep_ids=3)
    assert list(state.ledger) == ["b2", "b3", "b4"]


def test_the_ledger_forgets_ids_older_than_its_day_window() -> None:
    state = CatalogState()
    state.record(result("old", 1), NOW - dt.timedelta(days=31), keep_days=30, keep_ids=100)
    state.record(result("new", 2), NOW, keep_days=30, keep_ids=100)
    assert list(state.ledger) == ["new"]


def test_the_ledger_keeps_only_the_first_errors_of_a_rejection() -> None:
    state = CatalogState()
    errors = [RecordError(index=i, msg="bad") for i in range(100)]
    rejected = BatchResult(batch_id="r", status=BatchStatus.REJECTED, errors=errors, sequence=1)
    state.record(rejected, NOW, keep_days=30, keep_ids=10)
    original = state.original("r")
    assert original is not None and len(original.errors) == 20


def test_a_state_survives_serialization(tmp_path: Path) -> None:
    state = CatalogState(fence=7, catalog_sha256="ab" * 32, versions={"A": {"pricing": 3}})
    state.record(result("b1", 1), NOW, 30, 10)
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
