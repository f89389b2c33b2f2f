"""worker.store: applying batches and restoring backups through the lock, with a real Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from catalog_core.errors import (
    BatchTooLargeError, CatalogCorruptError, LockLostError, ProductNotYetCreatedError, RedisUnavailableError,
)
from catalog_core.settings import Settings, load_settings
from schemas import BatchStatus
from producers.files import read_batch_file
from tests.helpers import product
from worker import store as store_module
from worker.backups import list_backups
from worker.catalog_image import CatalogImage
from worker.store import CatalogStore
from worker.write_attempt import WriteAttempt


def catalog_ids(settings: Settings) -> list[str]:
    return [p["product_id"] for p in json.loads(settings.catalog_path.read_text())]


def test_the_first_batch_creates_the_catalog_without_a_backup(settings: Settings) -> None:
    result = CatalogStore(settings).apply([product("A"), product("B")], "b1")
    assert result.status == BatchStatus.APPLIED
    assert (result.created, result.updated, result.backup) == (2, 0, None)
    assert catalog_ids(settings) == ["A", "B"]


def test_each_write_keeps_the_previous_version_as_a_backup(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    first = settings.catalog_path.read_bytes()
    result = store.apply([{"product_id": "A", "category": "Cruise"}], "b2")
    assert result.status == BatchStatus.APPLIED and result.updated == 1
    assert result.backup is not None and Path(result.backup).read_bytes() == first


def test_the_version_a_commit_replaced_has_its_cached_pages_released_once_the_lock_is_free(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CatalogStore(settings)
    released: list[tuple[Path | None, bool]] = []

    def release(path: Path | None) -> None:
        released.append((path, bool(store.redis.keys("lock:*"))))  # python-redis-lock: held while "lock:<name>" is

    monkeypatch.setattr(store_module, "release_cached_pages", release)
    store.apply([product("A")], "b1")  # no catalog before: no backup
    result = store.apply([{"product_id": "A", "category": "Cruise"}], "b2")
    unchanged = store.apply([{"product_id": "A", "category": "Cruise"}], "b3")
    assert unchanged.status == BatchStatus.UNCHANGED
    undo = store.restore(Path(str(result.backup)).name)
    assert result.backup is not None and undo is not None
    assert released[:3] == [(None, False), (Path(result.backup), False), (None, False)]
    assert released[3][0] == undo


def test_a_batch_that_changes_nothing_writes_nothing_and_takes_no_backup(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A", category="Tour")], "b1")
    mtime = settings.catalog_path.stat().st_mtime_ns
    result = store.apply([{"product_id": "A", "category": "Tour"}], "b2")
    assert result.status == BatchStatus.UNCHANGED and result.unchanged == 1
    assert settings.catalog_path.stat().st_mtime_ns == mtime
    assert list_backups(settings.catalog_path, settings.backup_path) == []


def test_a_rejected_batch_leaves_the_catalog_byte_for_byte(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    before = settings.catalog_path.read_bytes()
    result = store.apply([product("B"), {"product_id": "A", "pricing": [{"tier_name": "x", "price_aed": -1}]}], "b2")
    assert result.status == BatchStatus.REJECTED
    assert [(e.index, e.loc) for e in result.errors] == [(1, "pricing[0].price_aed")]
    assert settings.catalog_path.read_bytes() == before


def test_a_corrupt_catalog_is_never_overwritten(settings: Settings) -> None:
    settings.catalog_path.parent.mkdir(parents=True)
    settings.catalog_path.write_text('[{"product_id": "A", ')
    with pytest.raises(CatalogCorruptError, match="catalog backups"):
        CatalogStore(settings).apply([product("B")], "b1")
    assert settings.catalog_path.read_text() == '[{"product_id": "A", '


def test_a_batch_over_the_item_limit_is_refused(catalog_path: Path, redis_url: str) -> None:
    settings = load_settings(path=catalog_path, redis_url=redis_url, max_batch_items=3)
    with pytest.raises(BatchTooLargeError, match="CATALOG_MAX_BATCH_ITEMS"):
        CatalogStore(settings).apply([product(str(i)) for i in range(4)], "big")
    assert not catalog_path.exists()


def test_losing_the_lock_before_the_replace_abandons_the_write(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    before = settings.catalog_path.read_bytes()

    def lost(self: object) -> None:
        raise LockLostError("the catalog lock expired; write abandoned")

    monkeypatch.setattr(store_module.HeldLock, "ensure_held", lost)
    with pytest.raises(LockLostError):
        store.apply([product("B")], "b2")
    assert settings.catalog_path.read_bytes() == before
    assert [p.name for p in settings.catalog_path.parent.iterdir() if p.suffix == ".tmp"] == []


def test_an_unreachable_redis_refuses_to_write(catalog_path: Path) -> None:
    settings = load_settings(path=catalog_path, redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis"):
        CatalogStore(settings).apply([product("A")], "b1")
    assert not catalog_path.exists()


def test_restore_puts_a_backup_back_and_backs_up_the_current_version(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    first = store.apply([product("B")], "b2").backup
    assert first is not None
    current = settings.catalog_path.read_bytes()
    undo = store.restore(Path(first).name)
    assert catalog_ids(settings) == ["A"]
    assert undo is not None and undo.read_bytes() == current


def test_restore_rescues_a_corrupt_catalog(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    good = store.apply([product("B")], "b2").backup
    assert good is not None
    settings.catalog_path.write_text("garbage")
    store.restore(Path(good).name)
    assert catalog_ids(settings) == ["A"]


def test_restore_refuses_a_backup_that_is_itself_broken(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    backup = Path(str(store.apply([product("B")], "b2").backup))
    backup.unlink()
    backup.write_text("[{")
    before = settings.catalog_path.read_bytes()
    with pytest.raises(CatalogCorruptError):
        store.restore(backup.name)
    assert settings.catalog_path.read_bytes() == before


def test_a_crashed_writers_temp_file_is_cleaned_by_the_next_write(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    stale = settings.catalog_path.parent / ".products.json.deadbeef.tmp"
    stale.write_text("[{half")
    store.apply([product("B")], "b2")
    assert not stale.exists()


def test_seed_batches_apply_to_a_copy_of_the_seed_catalog(settings: Settings, seed_dir: Path) -> None:
    settings.catalog_path.parent.mkdir(parents=True)
    settings.catalog_path.write_bytes((seed_dir / "products.json").read_bytes())
    store = CatalogStore(settings)
    statuses = {}
    for batch_path in sorted((seed_dir / "batches").glob("*.jsonl")):
        result = store.apply(read_batch_file(batch_path, settings.max_batch_bytes).records, batch_path.stem)
        assert result.status != BatchStatus.REJECTED, result.errors
        statuses[batch_path.stem] = result.status
    assert len(json.loads(settings.catalog_path.read_text())) == 52
    assert BatchStatus.APPLIED in statuses.values()


# --- exactly-once effects ----------------------------------------------------------------------

def test_a_batch_id_applied_once_is_a_duplicate_afterwards_with_its_original_result(settings: Settings) -> None:
    store = CatalogStore(settings)
    first = store.apply([product("A")], "feed-1")
    after_first = settings.catalog_path.read_bytes()
    again = store.apply([product("A", category="Changed")], "feed-1")
    assert again.status == BatchStatus.DUPLICATE
    assert again.original is not None and again.original.status == BatchStatus.APPLIED
    assert again.original.sequence == first.sequence and again.original.created == 1
    assert settings.catalog_path.read_bytes() == after_first


def test_a_rejected_batch_stays_rejected_when_it_comes_again(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([{"product_id": "GHOST", "category": "x"}], "bad-1")
    again = store.apply([{"product_id": "GHOST", "category": "x"}], "bad-1")
    assert again.status == BatchStatus.DUPLICATE and again.original.status == BatchStatus.REJECTED  # type: ignore[union-attr]


def test_an_older_batch_does_not_overwrite_fields_a_newer_one_wrote(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A", category="First")], "create", sequence=1)
    newer = store.apply([{"product_id": "A", "category": "Newest"}], "price-1001", sequence=3)
    older = store.apply([{"product_id": "A", "category": "Stale", "duration_hours": 4}], "feed-1000", sequence=2)
    assert newer.status == BatchStatus.APPLIED
    assert older.status == BatchStatus.APPLIED
    assert [(s.product_id, s.field, s.by_sequence) for s in older.superseded] == [("A", "category", 3)]
    [stored] = json.loads(settings.catalog_path.read_text())
    assert (stored["category"], stored["duration_hours"]) == ("Newest", 4)


def test_apply_takes_a_sequence_and_a_fence_and_reports_them(settings: Settings) -> None:
    store = CatalogStore(settings)
    first = store.apply([product("A")], "b1")
    second = store.apply([product("B")], "b2")
    assert first.sequence is not None and second.sequence is not None and second.sequence > first.sequence
    assert first.fence is not None and second.fence is not None and second.fence > first.fence


def test_a_patch_of_a_product_a_pending_lower_batch_may_create_is_retried_not_rejected(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("SEED")], "seed", sequence=1)
    with pytest.raises(ProductNotYetCreatedError, match="lower sequence are pending"):
        store.apply([{"product_id": "LATE", "category": "x"}], "patch", sequence=3, final_attempt=False)
    store.apply([product("LATE")], "create", sequence=2)
    patched = store.apply([{"product_id": "LATE", "category": "x"}], "patch", sequence=3, final_attempt=False)
    assert patched.status == BatchStatus.APPLIED


def test_on_its_last_attempt_such_a_patch_is_rejected(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("SEED")], "seed", sequence=1)
    result = store.apply([{"product_id": "LATE", "category": "x"}], "patch", sequence=3, final_attempt=True)
    assert result.status == BatchStatus.REJECTED


def test_a_writer_fenced_by_a_newer_commit_does_not_replace_the_catalog(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock check is blinded, as if the lock had silently passed to another writer."""
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    other = CatalogStore(settings)
    real_check = WriteAttempt.check
    calls = []

    def newer_writer_commits_first(self: WriteAttempt) -> None:
        if not calls:
            calls.append(1)
            monkeypatch.setattr(store_module.HeldLock, "ensure_held", lambda _self: None)
            # Another writer gets a higher token and commits while we are about to commit.
            other_write = other._begin(self.held)
            other_write.commit(CatalogImage.from_products([{"product_id": "OTHER"}]), None)
        real_check(self)

    monkeypatch.setattr(WriteAttempt, "check", newer_writer_commits_first)
    result = store.apply([product("B")], "b2")  # fenced on the first try, then starts over
    assert result.status == BatchStatus.APPLIED
    assert [p["product_id"] for p in json.loads(settings.catalog_path.read_text())] == ["OTHER", "B"]


def test_fencing_tokens_stay_above_the_last_commit_after_redis_lost_its_data(settings: Settings) -> None:
    store = CatalogStore(settings)
    before = store.apply([product("A")], "b1")
    store.redis.flushall()
    after = store.apply([product("B")], "b2")
    assert after.fence is not None and before.fence is not None and after.fence > before.fence


def test_an_abandoned_sequence_no_longer_makes_later_batches_wait(settings: Settings) -> None:
    from catalog_core.sequence import abandon_sequence, abandoned_sequences, next_sequence

    store = CatalogStore(settings)
    store.apply([product("SEED")], "seed")
    lost = next_sequence(store.redis, settings.queue)  # a producer died before queueing this one
    later = next_sequence(store.redis, settings.queue)
    with pytest.raises(ProductNotYetCreatedError):
        store.apply([{"product_id": "GHOST", "category": "x"}], "ghost", sequence=later, final_attempt=False)
    abandon_sequence(store.redis, settings.queue, lost)
    result = store.apply([{"product_id": "GHOST", "category": "x"}], "ghost", sequence=later, final_attempt=False)
    assert result.status == BatchStatus.REJECTED
    assert abandoned_sequences(store.redis, settings.queue) == []


# --- edges that mutation testing showed untested (tools/mutation.py) ---------------------------

import logging  # noqa: E402

from catalog_core.sequence import next_sequence  # noqa: E402
from worker.state import read_state, state_path  # noqa: E402


def test_a_corrupt_catalog_is_named_in_the_error(settings: Settings) -> None:
    settings.catalog_path.parent.mkdir(parents=True)
    settings.catalog_path.write_text("[{")
    with pytest.raises(CatalogCorruptError, match=str(settings.catalog_path)):
        CatalogStore(settings).apply([product("B")], "b1")


def test_a_broken_backup_is_named_when_restore_refuses_it(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    backup = Path(str(store.apply([product("B")], "b2").backup))
    backup.unlink()
    backup.write_text("[{")
    with pytest.raises(CatalogCorruptError, match=backup.name):
        store.restore(backup.name)


def test_the_state_counts_commits_that_changed_the_catalog_and_duplicates(settings: Settings) -> None:
    store = CatalogStore(settings)
    for batch_id in ("b1", "b2", "b3"):
        store.apply([product(batch_id)], batch_id)
    store.apply([{"product_id": "b1", "category": None}], "b4")  # unchanged: no catalog commit
    store.apply([product("b1")], "b1")  # duplicates
    store.apply([product("b1")], "b1")
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and (state.commits, state.duplicates) == (3, 2)


def test_a_writer_that_loses_its_lock_every_time_gives_up_after_three_attempts_saying_each_restart(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = CatalogStore(settings)
    attempts = []

    def lost(self: object) -> None:
        attempts.append(1)
        raise LockLostError("the catalog lock expired")

    monkeypatch.setattr(store_module.HeldLock, "ensure_held", lost)
    with caplog.at_level(logging.WARNING, logger="worker.store"), pytest.raises(LockLostError):
        store.apply([product("A")], "b1")
    assert len(attempts) == store_module.COMMIT_ATTEMPTS == 3
    assert [r.getMessage() for r in caplog.records if r.name == "worker.store"] == [
        "write abandoned (the catalog lock expired); starting over (attempt 2)",
        "write abandoned (the catalog lock expired); starting over (attempt 3)",
    ]


def test_apply_decides_for_good_unless_told_it_is_not_the_final_attempt(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("SEED")], "seed", sequence=1)
    result = store.apply([{"product_id": "LATE", "category": "x"}], "patch", sequence=3)
    assert result.status == BatchStatus.REJECTED


def test_the_retry_error_names_the_batch_and_the_missing_products(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("SEED")], "seed", sequence=1)
    with pytest.raises(ProductNotYetCreatedError) as info:
        store.apply([{"product_id": "LATE", "category": "x"}, {"product_id": "LATER", "category": "y"}], "patch",
                    sequence=3, final_attempt=False)
    assert str(info.value) == ("batch patch patches products that do not exist yet (LATE, LATER) while batches "
                               "with a lower sequence are pending; retrying")


def test_a_batch_with_other_errors_besides_missing_products_is_rejected_at_once(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("SEED")], "seed", sequence=1)
    records = [{"product_id": "LATE", "category": "x"}, {"product_id": "SEED", "pricing": [{"tier_name": "x",
                                                                                           "price_aed": -1}]}]
    result = store.apply(records, "mixed", sequence=3, final_attempt=False)
    assert result.status == BatchStatus.REJECTED


def test_a_duplicate_reports_its_own_sequence_and_fence_and_completes_its_sequence(settings: Settings) -> None:
    store = CatalogStore(settings)
    first = store.apply([product("A")], "feed-1", sequence=1)
    again = store.apply([product("A")], "feed-1", sequence=2)
    assert again.status == BatchStatus.DUPLICATE and again.sequence == 2
    assert again.fence is not None and first.fence is not None and again.fence > first.fence
    # 2 has its outcome now, so nothing lower can still create GHOST: rejected, not retried.
    result = store.apply([{"product_id": "GHOST", "category": "x"}], "ghost", sequence=3, final_attempt=False)
    assert result.status == BatchStatus.REJECTED


def test_a_batch_without_a_sequence_gets_one_above_all_the_catalog_has_seen_after_redis_lost_its_data(
    settings: Settings,
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    second = store.apply([product("B")], "b2")
    store.redis.flushall()
    third = store.apply([product("C")], "b3")
    assert third.sequence is not None and second.sequence is not None and third.sequence > second.sequence


def test_each_batch_is_logged_once_with_its_outcome(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    store = CatalogStore(settings)
    store.apply([product("A"), product("Z")], "b0", sequence=1)
    store.apply([{"product_id": "Z", "product_name": "New"}], "b9", sequence=9)
    with caplog.at_level(logging.INFO, logger="worker"):
        records = [product("B"), {"product_id": "A", "category": "Tour"}, {"product_id": "Z", "product_name": "Old"}]
        store.apply(records, "b1", sequence=2)
        store.apply(records, "b1", sequence=3)
    assert [r.getMessage() for r in caplog.records if r.name in ("worker.store", "worker.batch_apply")] == [
        "batch b1 (sequence 2) applied: 1 created, 1 updated, 1 unchanged, 1 superseded field(s)",
        "batch b1 was already applied: duplicate",
    ]


# --- order safety through the store: real Redis, real files, the retry rule ---------------------

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st  # noqa: E402

from devtools.reference_model import apply_in_sequence_order  # noqa: E402
from tests.test_merge import batches as batch_lists, initial_catalog  # noqa: E402


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batch_lists, order=st.randoms(use_true_random=False))
def test_the_store_gives_the_catalog_of_the_reference_model_after_any_processing_order(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, batches: list[list[dict]], order,  # type: ignore[no-untyped-def]
) -> None:
    """Each batch gets its sequence from the counter; processed in a shuffled order; a batch the
    store asks to retry (a lower batch may create its product) goes to the back of the queue."""
    from catalog_core.sequence import next_sequence
    from worker.catalog_file import serialize_catalog

    catalog_path = tmp_path_factory.mktemp("catalog") / "products.json"
    catalog_path.write_bytes(serialize_catalog(initial_catalog()))
    settings = load_settings(path=catalog_path, redis_url=redis_url, lock_expire=5, lock_timeout=20)
    store = CatalogStore(settings)
    store.redis.flushall()
    queue = [(next_sequence(store.redis, settings.queue), records) for records in batches]
    first = queue[0][0]  # an epoch start after the flush: consecutive from there
    assert [sequence for sequence, _ in queue] == list(range(first, first + len(batches)))
    order.shuffle(queue)
    attempts = 0
    while queue:
        sequence, records = queue.pop(0)
        attempts += 1
        assert attempts <= 10 * len(batches), "a batch is retried forever"
        try:
            store.apply(records, f"batch-{sequence}", sequence=sequence, final_attempt=False)
        except ProductNotYetCreatedError:
            queue.append((sequence, records))
    assert json.loads(catalog_path.read_bytes()) == apply_in_sequence_order(initial_catalog(), batches)


def refused_by_every_writer(settings: Settings, store: CatalogStore, records: list[dict[str, Any]], batch_id: str,
                             match: str) -> None:
    """The writer that wrote the files, and any other, refuse the batch with ``match``."""
    for writer in (store, CatalogStore(settings)):
        with pytest.raises(CatalogCorruptError, match=match):
            writer.apply(records, batch_id)


def test_a_catalog_deleted_while_its_state_records_it_is_refused_not_replaced_and_a_restore_brings_it_back(
    settings: Settings,
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A"), product("B")], "b1")
    store.apply([product("C")], "b2")  # its backup holds A and B
    state_before = (settings.catalog_path.parent / "products.json.state").read_bytes()
    settings.catalog_path.unlink()  # a mistaken `rm`, a clean-up script
    refused_by_every_writer(settings, store, [product("D")], "b3", "missing, but its state file records one")
    assert not settings.catalog_path.exists()
    assert (settings.catalog_path.parent / "products.json.state").read_bytes() == state_before  # nothing adopted
    [backup] = list_backups(settings.catalog_path, settings.backup_path)
    CatalogStore(settings).restore(backup.name)  # the way back the error names
    assert store.apply([product("D")], "b3").status == BatchStatus.APPLIED
    assert [p["product_id"] for p in json.loads(settings.catalog_path.read_text())] == ["A", "B", "D"]


def test_a_state_file_deleted_after_commits_is_refused_not_started_anew_and_its_previous_version_is_the_way_back(
    settings: Settings,
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    store.apply([product("B")], "b2")  # products.json.state.prev: the state from before b2's commit
    state = settings.catalog_path.with_name("products.json.state")
    catalog_before = settings.catalog_path.read_bytes()
    state.unlink()
    refused_by_every_writer(settings, store, [product("C")], "b3", "missing, but products.json.state.prev beside it")
    assert settings.catalog_path.read_bytes() == catalog_before and not state.exists()
    settings.catalog_path.with_name("products.json.state.prev").rename(state)  # the way back the error names
    assert store.apply([product("A")], "b1").status == BatchStatus.DUPLICATE  # the ledger is back
    assert store.apply([product("C")], "b3").status == BatchStatus.APPLIED
    assert [p["product_id"] for p in json.loads(settings.catalog_path.read_text())] == ["A", "B", "C"]


def test_a_state_file_deleted_after_the_catalogs_first_commit_is_refused_and_its_link_is_the_way_back(
    settings: Settings,
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")  # the first commit: no state before it to keep
    folder = settings.catalog_path.parent
    state, previous = folder / "products.json.state", folder / "products.json.state.prev"
    assert previous.read_bytes() == state.read_bytes()  # linked past the commit point: the very state
    catalog_before = settings.catalog_path.read_bytes()
    state.unlink()
    refused_by_every_writer(settings, store, [product("A", product_name="Redelivered")], "b1",  # a new ledger
                            "missing, but products.json.state.prev beside it")  # would apply it again
    assert settings.catalog_path.read_bytes() == catalog_before and not state.exists()
    previous.rename(state)
    assert store.apply([product("A", product_name="Redelivered")], "b1").status == BatchStatus.DUPLICATE
    assert store.apply([product("B")], "b2").status == BatchStatus.APPLIED
    assert store.apply([product("C")], "b3").status == BatchStatus.APPLIED
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("products.json")) == [
        "products.json", "products.json.id", "products.json.state", "products.json.state.prev"]  # no link left over


def test_a_catalog_without_any_state_yet_still_gets_one(settings: Settings) -> None:
    settings.catalog_path.parent.mkdir(parents=True, exist_ok=True)
    settings.catalog_path.write_text(json.dumps([product("SEED")]))  # the replaced system's file, as found
    assert CatalogStore(settings).apply([product("A")], "b1").status == BatchStatus.APPLIED
    assert [p["product_id"] for p in json.loads(settings.catalog_path.read_text())] == ["SEED", "A"]
