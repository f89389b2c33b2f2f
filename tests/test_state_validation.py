"""The state file is hostile input: validated whole on load, and it never names a path."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from catalog_core.errors import CatalogCorruptError
from schemas import BatchResult, BatchStatus
from tests.conftest import CliRunner
from tests.helpers import catalog_digest, product, write_jsonl
from worker.catalog_file import serialize_catalog
from worker import state as state_module
from worker.commit import commit
from worker.recovery import recover, recover_for_write
from worker.state import (
    CatalogState,
    FileIdentity,
    current_identity,
    parse_state,
    read_state,
    read_state_file,
    serialize_state,
    state_path,
)

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
OLD = serialize_catalog([product("OLD")])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def valid_state() -> dict[str, Any]:
    """A state as the code writes it, with one ledger entry and field versions."""
    state = CatalogState(fence=3, catalog_sha256=sha256(OLD), versions={"OLD": {"pricing": 1, "product_id": 1}})
    state.record(BatchResult(batch_id="b1", status=BatchStatus.APPLIED, created=1, sequence=1, fence=3),
                 NOW)
    raw: dict[str, Any] = orjson.loads(serialize_state(state))
    return raw


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    catalog = tmp_path / "catalog" / "products.json"
    catalog.parent.mkdir()
    commit(catalog, OLD, CatalogState(fence=1), lambda: None)
    return catalog


def test_a_pending_catalog_that_names_a_path_outside_the_folder_is_never_moved(committed: Path) -> None:
    victim = committed.parent.parent / "victim" / "secret.json"
    victim.parent.mkdir()
    victim.write_bytes(b'{"secret": true}')
    raw = orjson.loads(state_path(committed).read_bytes())
    raw["pending_catalog"] = "../victim/secret.json"
    raw["catalog_sha256"] = sha256(victim.read_bytes())
    state_path(committed).write_bytes(orjson.dumps(raw))

    raised: CatalogCorruptError | None = None
    try:
        recover(committed)
    except CatalogCorruptError as exc:
        raised = exc
    assert victim.exists() and victim.read_bytes() == b'{"secret": true}', "a file outside the folder was moved"
    assert committed.read_bytes() == OLD, "the catalog was replaced"
    assert raised is not None and "pending_catalog" in str(raised)


def test_the_state_written_by_a_commit_names_no_file(committed: Path) -> None:
    # Stop a commit between its two renames: the state then describes the catalog temp file.
    real_replace = os.replace
    calls: list[str] = []

    def replace_state_only(source: Any, target: Any) -> None:
        calls.append(str(target))
        if str(target).endswith("products.json"):
            raise OSError("simulated crash before the catalog rename")
        real_replace(source, target)

    new = serialize_catalog([product("NEW")])
    state = read_state(state_path(committed))
    assert state is not None
    os.replace = replace_state_only  # type: ignore[assignment]
    try:
        commit(committed, new, state, lambda: None)  # committed: the rename is left to recovery
    finally:
        os.replace = real_replace
    text = state_path(committed).read_text()
    assert "/" not in text and ".tmp" not in text, f"the state names a file: {text[:300]}"
    recovered, action = recover(committed)
    assert committed.read_bytes() == new and action is not None and "rolled forward" in action


BROKEN: dict[str, tuple[str, Any]] = {
    "ledger is a list": ("ledger", []),
    "completed is a string": ("completed", "x"),
    "watermark is null": ("watermark", None),
    "a version is a string": ("versions", {"OLD": {"pricing": "3"}}),
    "a version is a bool": ("versions", {"OLD": {"pricing": True}}),
    "a version is negative": ("versions", {"OLD": {"pricing": -1}}),
    "the fence is a float": ("fence", 3.0),
    "the fence is beyond 2**53": ("fence", 2**53),
    "the fence is a bool": ("fence", True),
    "commits is a string": ("commits", "4"),
    "catalog_sha256 is not a sha256": ("catalog_sha256", "ab"),
    "completed is not sorted": ("completed", [9, 7]),
    "completed holds a sequence at the watermark": ("completed", [0]),
    "an unknown field": ("surprise", 1),
    "format is a string": ("format", "1"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_state_file_with_a_wrong_field_is_a_clear_error_naming_the_file_and_the_field(
    tmp_path: Path, case: str
) -> None:
    field, value = BROKEN[case]
    raw = valid_state()
    raw[field] = value
    source = tmp_path / "products.json.state"
    with pytest.raises(CatalogCorruptError) as caught:
        parse_state(orjson.dumps(raw), source)
    message = str(caught.value)
    assert str(source) in message and field in message, message


LEDGER_BROKEN: dict[str, tuple[str, Any]] = {
    "created is a string": ("created", "1"),
    "sequence is a bool": ("sequence", True),
    "status is unknown": ("status", "exploded"),
    "recorded_at is missing": ("recorded_at", ...),
    "an unknown key": ("colour", "red"),
    "errors is a dict": ("errors", {}),
    "content_sha256 is a number": ("content_sha256", 5),
}


@pytest.mark.parametrize("case", list(LEDGER_BROKEN))
def test_a_ledger_entry_with_a_wrong_field_is_a_clear_error(tmp_path: Path, case: str) -> None:
    key, value = LEDGER_BROKEN[case]
    raw = valid_state()
    if value is ...:
        del raw["ledger"]["b1"][key]
    else:
        raw["ledger"]["b1"][key] = value
    source = tmp_path / "products.json.state"
    with pytest.raises(CatalogCorruptError) as caught:
        parse_state(orjson.dumps(raw), source)
    message = str(caught.value)
    assert str(source) in message and "b1" in message and key in message, message


def test_a_ledger_entry_may_carry_the_hash_of_its_records(tmp_path: Path) -> None:
    raw = valid_state()
    raw["ledger"]["b1"]["content_sha256"] = sha256(b"records")
    state = parse_state(orjson.dumps(raw), tmp_path / "products.json.state")
    assert state.ledger["b1"]["content_sha256"] == sha256(b"records")
    assert parse_state(serialize_state(state), tmp_path / "products.json.state") == state


def test_a_valid_state_file_reads_back_equal(tmp_path: Path) -> None:
    raw = valid_state()
    state = parse_state(orjson.dumps(raw), tmp_path / "products.json.state")
    assert orjson.loads(serialize_state(state)) == raw
    original = state.original("b1")
    assert original is not None and original.status == BatchStatus.APPLIED and original.created == 1


def test_catalog_apply_on_a_state_file_with_wrong_types_exits_3_naming_the_field_and_leaves_the_catalog(
    committed: Path, run_cli: CliRunner, tmp_path: Path
) -> None:
    raw = orjson.loads(state_path(committed).read_bytes())
    raw["ledger"] = []
    state_path(committed).write_bytes(orjson.dumps(raw))
    batch = write_jsonl(tmp_path / "batch.jsonl", [product("NEW")])
    done = run_cli("apply", str(batch))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "products.json.state" in done.stderr and "ledger" in done.stderr, done.stderr
    assert committed.read_bytes() == OLD


def test_the_identity_read_is_of_the_file_whose_bytes_were_parsed_even_if_it_is_replaced_right_after(
    committed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = state_path(committed)
    kept = path.with_name("kept-old-state")
    os.link(path, kept)  # keeps the old inode alive and stat-able after the replacement
    newer = CatalogState(fence=99, catalog_sha256=sha256(OLD))
    real_read = os.read

    def read_then_replace(fd: int, size: int) -> bytes:
        chunk = real_read(fd, size)
        if not chunk:  # the whole file was read: another writer commits now
            replacement = path.with_name("replacement")
            replacement.write_bytes(serialize_state(newer))
            os.replace(replacement, path)
        return chunk

    monkeypatch.setattr(state_module.os, "read", read_then_replace)
    state, identity = read_state_file(path)
    monkeypatch.undo()
    assert state is not None and state.fence == 1, "the bytes parsed are the old file's"
    old = FileIdentity.of(os.stat(kept))  # its ctime moved when it lost its name; the rest is the old file
    assert identity is not None and identity[:4] == old[:4], "the identity must be the old file's, the one read"
    assert identity != current_identity(path)


def test_an_absent_state_file_has_no_identity(tmp_path: Path) -> None:
    assert read_state_file(tmp_path / "products.json.state") == (None, None)
    assert current_identity(tmp_path / "products.json.state") is None


def test_a_fifo_as_state_file_is_refused_without_hanging(tmp_path: Path) -> None:
    path = tmp_path / "products.json.state"
    os.mkfifo(path)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_state(path)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO as the state file hung"
    assert isinstance(outcome[0], CatalogCorruptError) and "not a regular file" in str(outcome[0])


def test_recovery_returns_the_identity_of_the_state_it_finally_read(committed: Path) -> None:
    commit(committed, serialize_catalog([product("NEW")]), CatalogState(fence=2), lambda: None)
    committed.write_bytes(OLD)  # the new catalog was lost: recovery rolls the state back
    before = current_identity(state_path(committed))
    recovered = recover_for_write(committed)
    assert recovered.action is not None and "rolled back" in recovered.action
    assert recovered.state.fence == 1 and recovered.image.sha256 == catalog_digest(OLD)
    assert recovered.state_identity == current_identity(state_path(committed)) != before


def test_a_state_written_by_the_previous_release_rolls_forward_by_the_token_in_its_temp_name(
    committed: Path,
) -> None:
    new = serialize_catalog([product("NEW")])
    temp = committed.with_name(".products.json.0a1b2c3d.tmp")
    temp.write_bytes(new)
    # A format-1 state (one file), as the release before the previous one wrote it.
    raw = orjson.loads(serialize_state(read_state(state_path(committed))))
    raw.pop("pending_token", None)
    raw.update(pending_catalog=temp.name, catalog_sha256=sha256(new))  # what the previous release wrote
    state_path(committed).write_bytes(orjson.dumps(raw))
    state, action = recover(committed)
    assert action is not None and "rolled forward" in action
    assert committed.read_bytes() == new and not temp.exists()
    assert "pending_catalog" not in orjson.loads(serialize_state(state))


def test_a_pending_catalog_temp_that_is_a_symlink_is_not_rolled_forward(committed: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.json"
    victim.write_bytes(b'{"secret": true}')
    committed.with_name(".products.json.0a1b2c3d.tmp").symlink_to(victim)
    # A format-1 state (one file), as the release before the previous one wrote it.
    raw = orjson.loads(serialize_state(read_state(state_path(committed))))
    raw.pop("pending_token", None)
    raw.update(pending_catalog=".products.json.0a1b2c3d.tmp", catalog_sha256=sha256(victim.read_bytes()))
    state_path(committed).write_bytes(orjson.dumps(raw))
    recover(committed)
    assert committed.read_bytes() == OLD and not committed.is_symlink()
    assert victim.read_bytes() == b'{"secret": true}'


def test_a_batch_id_with_control_characters_is_shown_escaped(tmp_path: Path) -> None:
    raw = valid_state()
    raw["ledger"]["evil\x1b[2J"] = {**raw["ledger"]["b1"], "created": "1"}
    with pytest.raises(CatalogCorruptError) as caught:
        parse_state(orjson.dumps(raw), tmp_path / "products.json.state")
    assert "\x1b" not in str(caught.value) and "evil\\x1b[2J" in str(caught.value)


def journal_record_with_events(committed: Path, events: list[Any]) -> bytes:
    """The committed state record, its journal holding one more entry with ``events``."""
    raw = orjson.loads(state_path(committed).read_bytes())
    raw["journal"].append({"ledger": {}, "versions": {}, "events": events})
    return orjson.dumps(raw)


@pytest.mark.parametrize("missing", ["event_id", "fence", "batch_id"])
def test_a_journal_event_without_what_the_outbox_reads_is_a_clear_error_not_a_crash_of_every_write(
    committed: Path, missing: str, run_cli: CliRunner, tmp_path: Path
) -> None:
    event = {"event_id": "3-9", "fence": 3, "batch_id": "b9", "sequence": 9, "changes": []}
    del event[missing]
    data = journal_record_with_events(committed, [event])
    with pytest.raises(CatalogCorruptError) as caught:
        parse_state(data, state_path(committed))
    assert str(state_path(committed)) in str(caught.value) and missing in str(caught.value)
    state_path(committed).write_bytes(data)
    done = run_cli("apply", str(write_jsonl(tmp_path / "batch.jsonl", [product("NEW")])))
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert missing in done.stderr and committed.read_bytes() == OLD


def test_a_journal_event_reads_back_whole_and_in_order_to_be_published_as_it_was(committed: Path) -> None:
    event = {"event_id": "3-9", "fence": 3, "batch_id": "b9", "sequence": 9, "source": "feed",
             "committed_at": 1.5, "backup": None, "changes": [{"product_id": "A", "fields": [1, {"x": None}]}]}
    state = parse_state(journal_record_with_events(committed, [event]), state_path(committed))
    [read_back] = state.journal[-1]["events"]
    assert list(read_back.items()) == list(event.items())
