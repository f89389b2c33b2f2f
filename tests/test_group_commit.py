"""worker.group_commit with real threads, a real store and Redis: who joins a commit, and each batch's own outcome."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from catalog_core.errors import ProductNotYetCreatedError
from catalog_core.settings import Settings
from tests.helpers import product, wait_for
from worker.group_commit import GroupCommitter
from worker.lock import catalog_lock
from worker.state import read_state, state_path
from worker.store import CatalogStore

WAIT_S = 20.0


def run_in_threads(committer: GroupCommitter, store: CatalogStore, batches: dict[str, list[Any]]
                   ) -> tuple[list[threading.Thread], dict[str, Any]]:
    outcomes: dict[str, Any] = {}

    def one(batch_id: str, records: list[Any]) -> None:
        try:
            outcomes[batch_id] = committer.apply(store.request(records, batch_id))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcomes[batch_id] = exc

    threads = [threading.Thread(target=one, args=item) for item in batches.items()]
    for thread in threads:
        thread.start()
    return threads, outcomes


def test_batches_that_come_while_the_leader_waits_for_the_lock_join_its_commit(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("SEED")], "seed")
    committer = GroupCommitter(store.apply_group, 64)
    batches = {f"b{n}": [product(f"P{n}")] for n in range(6)}
    with catalog_lock(store.redis, settings.catalog_path, 10, 10):  # someone else is committing
        threads, outcomes = run_in_threads(committer, store, batches)
        wait_for(lambda: committer._leading and len(committer._waiting) == 5)  # the leader took one, and waits
    for thread in threads:
        thread.join(WAIT_S)
    assert {batch_id: result.status.value for batch_id, result in outcomes.items()} == dict.fromkeys(batches, "applied")
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and state.commits == 2  # the seed's, and one for all six


def test_each_batch_of_a_group_gets_its_own_outcome_and_a_rejection_leaves_no_trace(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "seed")
    committer = GroupCommitter(store.apply_group, 64)
    batches = {"good": [{"product_id": "A", "category": "kept"}], "bad": [{"product_id": "A", "pricing": []},
                                                                         {"product_id": "B"}],
               "new": [product("C")]}
    with catalog_lock(store.redis, settings.catalog_path, 10, 10):
        threads, outcomes = run_in_threads(committer, store, batches)
        wait_for(lambda: committer._leading and len(committer._waiting) == 2)
    for thread in threads:
        thread.join(WAIT_S)
    assert outcomes["good"].status.value == "applied" and outcomes["new"].status.value == "applied"
    assert outcomes["bad"].status.value == "rejected"
    catalog = {p["product_id"]: p for p in __import__("json").loads(settings.catalog_path.read_text())}
    assert catalog["A"]["category"] == "kept" and "B" not in catalog and "C" in catalog


def test_a_failed_commit_fails_every_batch_of_its_group_and_none_is_applied(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "seed")
    committer = GroupCommitter(store.apply_group, 64)

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise ProductNotYetCreatedError("stands in for any failure of the write itself")

    monkeypatch.setattr(store, "_begin", disk_full)
    threads, outcomes = run_in_threads(committer, store, {"x": [product("X")], "y": [product("Y")]})
    for thread in threads:
        thread.join(WAIT_S)
    assert all(isinstance(outcome, ProductNotYetCreatedError) for outcome in outcomes.values())
    assert "X" not in settings.catalog_path.read_text()
