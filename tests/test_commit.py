"""worker.commit and worker.recovery: a crash between any two steps of a commit is recovered at the next load."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

from catalog_core.errors import FencedError
from schemas import BatchResult, BatchStatus
from tests.helpers import catalog_digest
from worker import commit as commit_module
from worker.catalog_file import serialize_catalog
from worker.commit import commit
from worker.recovery import recover
from worker.state import CatalogState, had_state, previous_state_path, read_state, state_path

OLD = b'[{"product_id": "OLD"}]\n'
NEW = b'[{"product_id": "NEW"}]\n'
# The layout the writers write, whose digest is the hash list of its products (worker/catalog_digest.py).
OWN_OLD = serialize_catalog([{"product_id": "OLD", "v": 1}])
OWN_NEW = serialize_catalog([{"product_id": "OLD", "v": 2}, {"product_id": "NEW"}])


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A committed catalog (OLD) with its state."""
    path = tmp_path / "products.json"
    state = CatalogState(fence=1)
    commit(path, OLD, state, lambda: None)
    return path


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def crash_in_child(catalog: Path, at: str, new: bytes = NEW) -> None:
    """Run a commit of ``new`` in a forked child that dies with os._exit at ``at``: no cleanup runs."""
    pid = os.fork()
    if pid == 0:  # the child
        real_replace = os.replace

        def replace(source: object, target: object) -> None:
            if at == "before the state rename" and str(target).endswith(".state"):
                os._exit(9)
            real_replace(source, target)  # type: ignore[arg-type]
            if at == "between the renames" and str(target).endswith(".state"):
                os._exit(9)
            if at == "after the catalog rename" and str(target).endswith("products.json"):
                os._exit(9)

        def check() -> None:
            if at == "after both temp files are written":
                os._exit(9)

        try:
            commit_module.os.replace = replace  # type: ignore[assignment]
            state = read_state(state_path(catalog)) or CatalogState()
            state.fence = 2
            commit(catalog, new, state, check)
        finally:  # never back into pytest, whatever the commit did: the parent waits for this exit
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 9, "the child did not crash where it was told to"


@pytest.mark.parametrize(
    ("crash_point", "expected"),
    [
        ("after both temp files are written", OLD),
        ("before the state rename", OLD),
        ("between the renames", NEW),
        ("after the catalog rename", NEW),
    ],
)
def test_a_crash_at_any_point_is_recovered_to_an_agreeing_catalog_and_state(
    catalog: Path, crash_point: str, expected: bytes
) -> None:
    crash_in_child(catalog, crash_point)
    state, _action = recover(catalog)
    assert catalog.read_bytes() == expected
    assert state.catalog_sha256 == catalog_digest(expected)
    assert read_state(state_path(catalog)) == state
    assert state.fence == (2 if expected == NEW else 1)
    assert temps(catalog.parent) == []


def test_the_crash_between_the_renames_is_rolled_forward_and_said(catalog: Path) -> None:
    crash_in_child(catalog, "between the renames")
    assert catalog.read_bytes() == OLD  # what a reader sees until the next load
    _, action = recover(catalog)
    assert action is not None and "rolled forward" in action


def test_a_lost_new_catalog_is_rolled_back_to_the_previous_state(catalog: Path) -> None:
    crash_in_child(catalog, "between the renames")
    for name in temps(catalog.parent):
        (catalog.parent / name).unlink()  # the new catalog is gone for good
    state, action = recover(catalog)
    assert action is not None and "rolled back" in action
    assert catalog.read_bytes() == OLD and state.catalog_sha256 == catalog_digest(OLD) and state.fence == 1


def test_a_catalog_edited_by_hand_is_adopted_not_overwritten(catalog: Path) -> None:
    catalog.write_bytes(b'[{"product_id": "HAND"}]')
    state, action = recover(catalog)
    assert action is not None and "outside catalog-ingest" in action
    assert json.loads(catalog.read_bytes()) == [{"product_id": "HAND"}]
    assert state.catalog_sha256 == catalog_digest(catalog.read_bytes())


def test_an_existing_catalog_without_state_gets_one(tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    path.write_bytes(OLD)
    state, action = recover(path)
    assert state.catalog_sha256 == catalog_digest(OLD) and action is not None


def test_a_commit_keeps_the_replaced_state_for_a_roll_back(catalog: Path) -> None:
    first = read_state(state_path(catalog))
    commit(catalog, NEW, CatalogState(fence=2), lambda: None)
    assert read_state(previous_state_path(catalog)) == first


def test_an_aborted_commit_leaves_everything_as_it_was(catalog: Path) -> None:
    before = (catalog.read_bytes(), state_path(catalog).read_bytes())

    class Abort(Exception):
        pass

    def refuse() -> None:
        raise Abort

    with pytest.raises(Abort):
        commit(catalog, NEW, CatalogState(fence=2), refuse)
    assert (catalog.read_bytes(), state_path(catalog).read_bytes()) == before
    assert temps(catalog.parent) == []


def test_a_state_only_commit_leaves_the_catalog_file_alone(catalog: Path) -> None:
    inode = catalog.stat().st_ino
    state = read_state(state_path(catalog))
    assert state is not None
    state.fence = 5
    commit(catalog, None, state, lambda: None)
    assert catalog.stat().st_ino == inode
    assert read_state(state_path(catalog)).fence == 5  # type: ignore[union-attr]


# --- edges that mutation testing showed untested (tools/mutation.py) ---------------------------

import logging  # noqa: E402

from catalog_core.errors import CatalogCorruptError, CommitError  # noqa: E402
from worker.recovery import recover_for_write  # noqa: E402


def test_recovery_of_agreeing_files_does_nothing_and_says_none(catalog: Path) -> None:
    state, data, action, _identity, _seen = recover_for_write(catalog)
    assert action is None and data.sha256 == catalog_digest(OLD) and state.catalog_sha256 == catalog_digest(OLD)


def test_recover_for_write_hands_back_the_catalog_as_rolled_forward(catalog: Path) -> None:
    crash_in_child(catalog, "between the renames")
    state, data, action, _identity, _seen = recover_for_write(catalog)
    assert data.sha256 == catalog_digest(NEW) and state.catalog_sha256 == catalog_digest(NEW)
    assert action is not None and action.startswith("rolled forward")


def test_each_recovery_says_what_it_did_in_its_own_words(catalog: Path, tmp_path: Path) -> None:
    crash_in_child(catalog, "between the renames")
    for name in temps(catalog.parent):
        (catalog.parent / name).unlink()
    assert recover(catalog)[1] == (
        "rolled back to the previous state: the new catalog of an interrupted commit was lost")
    catalog.write_bytes(b'[{"product_id": "HAND"}]')
    assert recover(catalog)[1] == (
        "the catalog was changed outside catalog-ingest; its current content is kept and adopted")
    fresh = tmp_path / "fresh" / "products.json"
    fresh.parent.mkdir()
    fresh.write_bytes(OLD)
    assert recover(fresh)[1] == "no state file yet: started one for the existing catalog"


def test_a_hand_edited_catalog_whose_state_names_no_pending_file_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    path.write_bytes(OLD)
    commit(path, None, CatalogState(catalog_sha256=catalog_digest(OLD)), lambda: None)  # a state-only commit
    assert read_state(state_path(path)).pending_token is None  # type: ignore[union-attr]
    path.write_bytes(NEW)
    state, action = recover(path)
    assert action is not None and "outside catalog-ingest" in action and state.catalog_sha256 == catalog_digest(NEW)


def test_recovery_logs_what_it_did_and_each_stale_temp_file_it_removed(
    catalog: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stale = catalog.parent / ".products.json.deadbeef.tmp"
    stale.write_bytes(b"[{half")
    catalog.write_bytes(b'[{"product_id": "HAND"}]')
    with caplog.at_level(logging.WARNING, logger="worker.recovery"):
        _, action = recover(catalog)
    messages = [record.getMessage() for record in caplog.records]
    assert f"removed {stale}, left by a writer that crashed or lost the lock" in messages
    assert f"{catalog}: {action}" in messages


def test_a_staging_link_left_by_a_crash_is_replaced_at_the_next_commit(catalog: Path) -> None:
    staging = previous_state_path(catalog).with_name(previous_state_path(catalog).name + ".new")
    staging.write_bytes(b"left by a crash")
    commit(catalog, NEW, CatalogState(fence=2), lambda: None)
    assert not staging.exists()
    assert sorted(p.name for p in catalog.parent.iterdir()) == [
        "products.json", "products.json.state", "products.json.state.prev"]


def test_a_failed_state_rename_is_a_commit_error_that_says_nothing_changed(
    catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (catalog.read_bytes(), state_path(catalog).read_bytes())
    real_replace = os.replace

    def no_space(source: object, target: object) -> None:
        if str(target).endswith(".state"):
            raise OSError(28, "No space left on device")
        real_replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(commit_module.os, "replace", no_space)
    with pytest.raises(CommitError) as info:
        commit(catalog, NEW, CatalogState(fence=2), lambda: None)
    assert str(info.value) == (f"{catalog}: could not commit ([Errno 28] No space left on device); "
                               "the previous version is intact")
    assert (catalog.read_bytes(), state_path(catalog).read_bytes()) == before
    assert temps(catalog.parent) == []


def test_a_failed_catalog_rename_after_the_commit_point_is_said_and_rolled_forward_at_the_next_load(
    catalog: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_replace = os.replace

    def refuse_catalog(source: object, target: object) -> None:
        if str(target).endswith("products.json"):
            raise OSError(5, "Input/output error")
        real_replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(commit_module.os, "replace", refuse_catalog)
    with caplog.at_level(logging.WARNING, logger="worker.commit"):
        commit(catalog, NEW, CatalogState(fence=2), lambda: None)  # committed: never a failure
    assert f"{catalog}: committed; the catalog rename is left to the next writer's recovery " \
           "([Errno 5] Input/output error)" in [r.getMessage() for r in caplog.records]
    monkeypatch.undo()
    assert recover_for_write(catalog).image.sha256 == catalog_digest(NEW)


@pytest.mark.parametrize("data", [OLD, OWN_NEW], ids=["another layout", "the writers' layout"])
def test_the_state_names_the_digest_of_the_whole_catalog_when_it_is_given_in_many_parts(tmp_path: Path,
                                                                                       data: bytes) -> None:
    parts = [data[at:at + 7] for at in range(0, len(data), 7)] + [b""]
    path = tmp_path / "products.json"
    commit(path, parts, CatalogState(fence=1), lambda: None)
    assert path.read_bytes() == data
    assert read_state(state_path(path)).catalog_sha256 == catalog_digest(data)  # type: ignore[union-attr]


@pytest.mark.parametrize(("crash_point", "committed"), [
    ("after both temp files are written", False),
    ("before the state rename", False),
    ("between the renames", True),
    ("after the catalog rename", True),
])
def test_a_crash_in_a_commit_of_a_catalog_in_the_writers_layout_is_recovered_by_its_digest(
    tmp_path: Path, crash_point: str, committed: bool
) -> None:
    path = tmp_path / "products.json"
    commit(path, OWN_OLD, CatalogState(fence=1), lambda: None)
    crash_in_child(path, crash_point, OWN_NEW)
    state, action = recover(path)
    expected = OWN_NEW if committed else OWN_OLD
    assert path.read_bytes() == expected and state.catalog_sha256 == catalog_digest(expected)
    assert ("rolled forward" in (action or "")) == (crash_point == "between the renames")
    assert read_state(state_path(path)) == state and temps(path.parent) == []


def test_a_lost_new_catalog_in_the_writers_layout_is_rolled_back_by_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    commit(path, OWN_OLD, CatalogState(fence=1), lambda: None)
    crash_in_child(path, "between the renames", OWN_NEW)
    for name in temps(path.parent):
        (path.parent / name).unlink()
    state, action = recover(path)
    assert action is not None and "rolled back" in action
    assert path.read_bytes() == OWN_OLD and state.catalog_sha256 == catalog_digest(OWN_OLD) and state.fence == 1


def test_a_state_written_before_the_digest_agrees_by_the_plain_sha256_and_the_next_commit_records_the_digest(
    tmp_path: Path
) -> None:
    path = tmp_path / "products.json"
    path.write_bytes(OWN_OLD)
    commit(path, None, CatalogState(fence=1, catalog_sha256=hashlib.sha256(OWN_OLD).hexdigest()), lambda: None)
    state, action = recover(path)
    assert action is None  # neither rolled nor adopted: the same catalog
    state.fence = 2
    commit(path, OWN_NEW, state, lambda: None)
    assert read_state(state_path(path)).catalog_sha256 == catalog_digest(OWN_NEW)  # type: ignore[union-attr]


def test_a_deleted_catalog_is_not_adopted_as_an_empty_one(catalog: Path) -> None:
    catalog.unlink()
    with pytest.raises(CatalogCorruptError, match="missing, but its state file records one"):
        recover(catalog)
    assert read_state(state_path(catalog)).catalog_sha256 == catalog_digest(OLD)  # type: ignore[union-attr]
    assert recover_for_write(catalog, missing_ok=True).image.sha256 is None  # a restore puts one back


def test_a_first_commit_that_aborts_at_its_check_leaves_nothing_that_says_a_state_existed(tmp_path: Path) -> None:
    path = tmp_path / "products.json"

    def lost_the_lock() -> None:
        raise FencedError("lost the lock")

    with pytest.raises(FencedError):
        commit(path, NEW, CatalogState(fence=1), lost_the_lock)
    assert not state_path(path).exists() and not previous_state_path(path).exists()
    assert not had_state(path)  # the next writer starts a state, rather than refusing a deleted one
    commit(path, NEW, CatalogState(fence=2), lambda: None)
    assert previous_state_path(path).read_bytes() == state_path(path).read_bytes()
    first = state_path(path).read_bytes()
    commit(path, OLD, CatalogState(fence=3), lambda: None)  # keeps the first as .state.prev: it already was
    assert previous_state_path(path).read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "products.json", "products.json.state", "products.json.state.prev"]


def test_a_first_commit_whose_link_fails_is_still_committed_and_says_the_check_is_blind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "products.json"

    def no_links(source: object, target: object) -> None:
        raise OSError(31, "Too many links")

    monkeypatch.setattr(commit_module.os, "link", no_links)
    with caplog.at_level(logging.WARNING, logger="worker.commit"):
        commit(path, NEW, CatalogState(fence=1), lambda: None)
    assert path.read_bytes() == NEW and read_state(state_path(path)) is not None
    assert not previous_state_path(path).exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"{state_path(path)}: could not link the first state as products.json.state.prev ([Errno 31] Too many "
        "links); were the state deleted before the next commit, writers could not tell it ever existed"]


def test_a_state_file_replaced_right_after_our_rename_is_not_taken_for_ours(
    catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that lost its lock can see another's state land between its rename and its stat:
    recording that identity as its own would make its copy look current, and its next write
    overwrite the other's commit."""
    real_sync = commit_module.sync_folder_or_warn

    def another_writer_commits(folder: Path) -> None:
        real_sync(folder)
        replacement = state_path(catalog).with_name("another-writers-state")
        replacement.write_bytes(state_path(catalog).read_bytes())
        os.replace(replacement, state_path(catalog))

    monkeypatch.setattr(commit_module, "sync_folder_or_warn", another_writer_commits)
    committed = commit(catalog, NEW, CatalogState(fence=2), lambda: None)
    assert committed.state_identity is None


def test_a_hand_edit_adopted_by_recovery_keeps_the_ledger_and_the_field_versions(catalog: Path) -> None:
    """Recovery rewrites the state when it adopts a hand edit: forgetting the ledger there would let a
    redelivered batch apply again, forgetting the versions let an older batch overwrite newer fields."""
    state = read_state(state_path(catalog))
    assert state is not None
    state.record(BatchResult(batch_id="b1", status=BatchStatus.APPLIED, sequence=7, created=1),
                 dt.datetime.now(dt.UTC))
    state.versions["OLD"] = {"product_id": 7, "v": 7}
    commit(catalog, OLD, state, lambda: None)
    catalog.write_bytes(b'[{"product_id": "HAND"}]\n')  # an edit by hand
    adopted, action = recover(catalog)
    assert action is not None and "adopted" in action
    for kept in (adopted, read_state(state_path(catalog))):
        assert kept is not None
        assert kept.ledger["b1"]["sequence"] == 7 and kept.versions["OLD"] == {"product_id": 7, "v": 7}
