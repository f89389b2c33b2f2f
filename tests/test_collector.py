"""The garbage collector waits while a commit holds the lock, and is back (as it was) after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
import redis_lock

from catalog_core.errors import CommitError
from catalog_core.settings import Settings
from tests.helpers import product
from worker import write_attempt
from worker.collector import collector_paused
from worker.store import CatalogStore


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was else gc.disable()


def test_a_commit_runs_with_the_collector_paused_and_it_is_back_on_after(settings: Settings) -> None:
    store = CatalogStore(settings)
    seen: list[bool] = []
    store.apply_group([store.request([product("A")], "b1")], deliver=lambda outcomes: seen.append(gc.isenabled()))
    assert seen == [False]
    assert gc.isenabled()


def test_the_collector_resumes_only_once_the_lock_is_released(settings: Settings,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Resuming it inside the lock's release ran the collection it owed with the lock held: a
    # twentieth of a worker's time in a burst, every other writer waiting.
    seen: list[bool] = []
    release = redis_lock.Lock.release

    def watched_release(lock: redis_lock.Lock) -> None:
        seen.append(gc.isenabled())
        release(lock)

    monkeypatch.setattr(redis_lock.Lock, "release", watched_release)
    CatalogStore(settings).apply([product("A")], "b1")
    assert seen == [False]
    assert gc.isenabled()


def test_the_collector_is_back_on_when_the_commit_fails(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_commit(*args: object, **kwargs: object) -> None:
        assert not gc.isenabled()
        raise CommitError("disk full (injected)")

    monkeypatch.setattr(write_attempt, "commit", failing_commit)
    with pytest.raises(CommitError):
        CatalogStore(settings).apply([product("A")], "b1")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_in_two_threads_resume_only_when_the_last_ends() -> None:
    first_in, second_done = threading.Event(), threading.Event()
    states: list[bool] = []

    def second() -> None:
        first_in.wait(5)
        with collector_paused():
            pass
        states.append(gc.isenabled())  # the first pause still runs
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    with collector_paused():
        first_in.set()
        assert second_done.wait(5)
    thread.join(5)
    assert states == [False]
    assert gc.isenabled()



def test_a_ready_worker_freezes_what_it_built_to_start(settings: Settings) -> None:
    from celery import signals

    from worker.app import create_app

    create_app(settings)  # installs the hooks
    gc.unfreeze()
    try:
        signals.worker_ready.send(sender=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
