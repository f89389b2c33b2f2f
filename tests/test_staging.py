"""worker.staging and the group committer's use of it, with two workers' committers in one process
(each its own store and cache), real threads and a real Redis."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

import orjson
import pytest
import redis

from catalog_core.errors import LockTimeoutError
from catalog_core.sequence import next_sequence
from catalog_core.settings import Settings
from schemas import BatchResult
from tests.helpers import product, wait_for
from worker import group_commit, staged_handover
from worker.app import WorkerContext
from worker.batch_apply import GroupMerge
from worker.lock import catalog_lock, lock_name
from worker import staging as staging_module
from worker.staging import DRAIN_NOTICE_MS, REPLY_TTL_S, push_answers, staging_key
from worker.state import read_state, state_path

WAIT_S = 20.0


def worker(settings: Settings) -> WorkerContext:
    context = WorkerContext(settings)
    context.store.apply([product("SEED")], f"seed-{id(context)}") if not settings.catalog_path.exists() else None
    return context


def key(settings: Settings) -> str:
    return staging_key(lock_name(settings.catalog_path))


def request(context: WorkerContext, batch_id: str, records: list[Any]) -> Any:
    return context.store.request(records, batch_id, next_sequence(context.store.redis, context.settings.queue))


def stage_once(into: list[Any], feeding: Any, feeder: WorkerContext, *batch_ids: str) -> None:
    """Stage ``batch_ids`` (one product each, named after them) from ``feeder``, the first time only."""
    if not into:
        into.append(feeding.stage([request(feeder, batch_id, [product(batch_id.upper())]) for batch_id in batch_ids]))


def in_thread(context: WorkerContext, batch_id: str, records: list[Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = context.committer.apply(request(context, batch_id, records))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_the_holder_commits_batches_staged_for_it_with_its_own_and_answers_each(settings: Settings) -> None:
    holder, feeder = worker(settings), worker(settings)
    staged = feeder.committer._staging.stage([request(feeder, "f1", [product("F1")]),  # type: ignore[union-attr]
                                              request(feeder, "f2", [{"product_id": "GHOST", "category": "x"}])])
    own = holder.committer.apply(request(holder, "h1", [product("H1")]))
    answers = {a.batch_id: a for a in feeder.committer._staging.wait(staged, 1.0)}  # type: ignore[union-attr]
    assert own.status.value == "applied"
    assert answers["f1"].result is not None and answers["f1"].result.status.value == "applied"
    assert answers["f2"].result is not None and answers["f2"].result.status.value == "rejected"
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and {"h1", "f1", "f2"} <= set(state.ledger)
    assert state.commits == 2  # the seed's, then one carrying all three


def test_a_holder_whose_own_batches_are_done_goes_on_with_batches_staged_during_its_commit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, feeder = worker(settings), worker(settings)
    staging, feeding = holder.committer._staging, feeder.committer._staging
    assert staging is not None and feeding is not None
    first = feeding.stage([request(feeder, "f1", [product("F1")])])
    later: list[Any] = []
    answer = staging.answer

    def answer_as_more_arrive(*args: Any) -> Any:
        stage_once(later, feeding, feeder, "f2", "f3")  # once the commit is written: too late for it
        return answer(*args)

    monkeypatch.setattr(staging, "answer", answer_as_more_arrive)
    own = holder.committer.apply(request(holder, "h1", [product("H1")]))
    # The feeder's committer never ran: only the holder can have committed f2 and f3.
    assert own.status.value == "applied"
    assert [a.batch_id for a in feeding.answers_now(first)] == ["f1"]
    answers: list[Any] = []
    wait_for(lambda: bool(answers.extend(feeding.wait(later[0], 0.2))) or len(answers) == 2, WAIT_S)
    assert sorted(a.batch_id for a in answers) == ["f2", "f3"]
    assert holder.store.redis.llen(key(settings)) == 0
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and {"h1", "f1", "f2", "f3"} <= set(state.ledger) and state.commits == 3


def test_batches_staged_while_a_fed_holder_merges_join_the_same_commit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a burst's end they waited for the whole of a long commit, then for a commit of their own.
    Only a holder others feed asks again (a round trip), so a lone worker's commit does not."""
    holder, feeder = worker(settings), worker(settings)
    feeding = feeder.committer._staging
    assert feeding is not None
    commits_before = read_state(state_path(settings.catalog_path)).commits  # type: ignore[union-attr]
    first = feeding.stage([request(feeder, "f0", [product("F0")])])  # the holder is fed
    late: list[Any] = []
    apply_one = GroupMerge.apply_one

    def merge_while_more_arrive(*args: Any) -> Any:
        stage_once(late, feeding, feeder, "f1", "f2")  # staged while the holder merges
        return apply_one(*args)

    monkeypatch.setattr(GroupMerge, "apply_one", merge_while_more_arrive)
    own = holder.committer.apply(request(holder, "h1", [product("H1")]))
    assert own.status.value == "applied"
    assert [a.batch_id for a in feeding.answers_now(first)] == ["f0"]
    answers = feeding.answers_now(late[0])  # answered before the holder returned: the same commit
    assert sorted((a.batch_id, a.result.status.value if a.result else None) for a in answers) == [
        ("f1", "applied"), ("f2", "applied")]
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and {"h1", "f0", "f1", "f2"} <= set(state.ledger)
    assert state.commits == commits_before + 1
    assert holder.store.redis.llen(key(settings)) == 0


def test_a_holder_nobody_feeds_does_not_ask_the_staging_list_again_after_its_merge(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = worker(settings)
    staging = holder.committer._staging
    assert staging is not None
    calls: list[int] = []
    take = staging.take

    def counting_take(limit: int, spent_bytes: int = 0) -> Any:
        calls.append(limit)
        return take(limit, spent_bytes)

    monkeypatch.setattr(staging, "take", counting_take)
    holder.committer.apply(request(holder, "h1", [product("H1")]))
    assert len(calls) == 1  # once the lock is held; none after the merge


def test_a_worker_shutting_down_ends_its_holders_drain_and_waits_for_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "STAY_WITH_HOLDER_S", 3600.0)  # left alone, the drain would wait an hour
    holder, feeder = worker(settings), worker(settings)
    feeding = feeder.committer._staging
    assert feeding is not None
    feeding.stage([request(feeder, "f1", [product("F1")])])
    holder.committer.apply(request(holder, "h1", [product("H1")]))  # carried f1: fed, so it drains
    drainer = holder.committer._drainer
    assert drainer is not None and drainer.is_alive()
    holder.on_worker_shutting_down(sig="SIGTERM", how="Warm", exitcode=0)
    assert not drainer.is_alive()
    assert not holder.committer._leading  # the lead is handed back: nothing is left waiting on it


def test_a_worker_app_ends_the_drain_when_celery_says_it_is_shutting_down(settings: Settings) -> None:
    from celery import signals

    from worker.app import create_app

    app = create_app(settings)
    receivers = [ref() if isinstance(ref, weakref.ref) else ref for _, ref in signals.worker_shutting_down.receivers]
    names = [getattr(receiver, "__name__", None) for receiver in receivers]
    assert "on_worker_shutting_down" in names, "create_app connects no shutdown hook"
    del app


def test_a_holder_that_cannot_start_its_drain_thread_still_returns_its_outcome(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoDrainThread(threading.Thread):
        def start(self) -> None:
            if self.name == "catalog-drain":
                raise RuntimeError("can't start new thread")
            super().start()

    monkeypatch.setattr(threading, "Thread", NoDrainThread)
    holder, feeder = worker(settings), worker(settings)
    feeding = feeder.committer._staging
    assert feeding is not None
    feeding.stage([request(feeder, "f1", [product("F1")])])
    assert holder.committer.apply(request(holder, "h1", [product("H1")])).status.value == "applied"
    assert not holder.committer._leading and holder.committer._drainer is None


def test_a_holder_not_fed_by_other_workers_does_not_wait_on_the_staging_list(settings: Settings) -> None:
    holder, feeder = worker(settings), worker(settings)
    staging, feeding = holder.committer._staging, feeder.committer._staging
    assert staging is not None and feeding is not None
    staging_before = staging.pending
    looked: list[bool] = []
    staging.pending = lambda: looked.append(True) or staging_before()  # type: ignore[method-assign]
    holder.committer.apply(request(holder, "h1", [product("H1")]))
    assert looked == []  # its commit carried nothing staged: no drain, no extra round trip


def test_a_worker_whose_copy_is_not_the_last_commit_stages_first_and_the_holder_with_the_files_commits_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "COLD_WAIT_S", WAIT_S)  # long: the holder's commit comes first
    cold, warm = worker(settings), worker(settings)
    warm.store.apply([product("W1")], "w1")  # the last commit: cold's copy is older
    assert warm.store.knows_latest() and not cold.store.knows_latest()
    thread, outcome = in_thread(cold, "c1", [product("C1")])
    wait_for(lambda: cold.store.redis.llen(key(settings)) == 1)  # staged, though the lock is free
    warm.committer.apply(request(warm, "w2", [product("W2")]))
    thread.join(WAIT_S)
    assert isinstance(outcome.get("result"), BatchResult) and outcome["result"].status.value == "applied", outcome
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and state.ledger["c1"]["fence"] == state.ledger["w2"]["fence"]  # one commit carried both


def test_a_worker_whose_copy_is_the_last_commit_takes_the_free_lock_without_staging(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "COLD_WAIT_S", WAIT_S)
    warm = worker(settings)
    warm.store.apply([product("W1")], "w1")
    staging = warm.committer._staging
    assert staging is not None and warm.store.knows_latest()
    staged: list[object] = []
    monkeypatch.setattr(staging, "stage", lambda requests: staged.append(requests))
    assert warm.committer.apply(request(warm, "w2", [product("W2")])).status.value == "applied"
    assert staged == []


def test_a_worker_that_finds_the_lock_held_stages_its_batch_and_commits_it_itself_once_the_lock_is_free(
    settings: Settings,
) -> None:
    feeder = worker(settings)
    client = feeder.store.redis
    with catalog_lock(client, settings.catalog_path, 10, 10):  # a writer that takes no staged batches (the CLI)
        thread, outcome = in_thread(feeder, "f1", [product("F1")])
        wait_for(lambda: client.llen(key(settings)) == 1)
    thread.join(WAIT_S)
    assert isinstance(outcome.get("result"), BatchResult) and outcome["result"].status.value == "applied", outcome
    assert client.llen(key(settings)) == 0  # taken back, not left for another holder


def test_batches_that_come_while_a_round_waits_for_the_holder_join_the_staging_list_at_once(
    settings: Settings,
) -> None:
    """They waited for every answer of the round before them, a whole commit of the holder: in a
    4-worker burst the stagers fed it one batch each, and the rest a commit later."""
    holder, feeder = worker(settings), worker(settings)
    client = feeder.store.redis
    with catalog_lock(client, settings.catalog_path, 10, 10):  # the holder, in a long commit
        first, first_outcome = in_thread(feeder, "f1", [product("F1")])
        wait_for(lambda: client.llen(key(settings)) == 1)
        second, second_outcome = in_thread(feeder, "f2", [product("F2")])
        wait_for(lambda: client.llen(key(settings)) == 2, 2.0)  # staged behind f1, before any answer
        assert not first_outcome and not second_outcome
        # A holder answers f2 (f1, taken with it, is left unanswered: that holder died, say): the
        # thread of f2 returns at once, while the leader, f1's thread, waits on for f1.
        staging = holder.committer._staging
        assert staging is not None
        taken = staging.take(2)
        assert [t.request.batch_id for t in taken] == ["f1", "f2"]
        result = BatchResult(batch_id="f2", status="applied", sequence=taken[1].request.sequence, fence=1)
        staging.answer([(taken[1], staged_handover.answer_to(taken[1], result))])
        second.join(WAIT_S)
        assert second_outcome.get("result") == result and not first_outcome
    first.join(WAIT_S)  # the lock free, the feeder commits f1 itself (taken, and never answered)
    assert isinstance(first_outcome.get("result"), BatchResult), first_outcome
    assert first_outcome["result"].status.value == "applied"
    assert client.llen(key(settings)) == 0


def notice_key(settings: Settings) -> str:
    return f"{key(settings)}:drainer"


def test_a_worker_whose_batch_is_staged_leaves_the_free_lock_to_a_holder_that_says_it_drains(
    settings: Settings,
) -> None:
    """Between two commits of a holder's drain the lock is free for an instant; a worker that took
    it then would make its commit read the holder's files first (in bursts of large batches it
    did, at the end of a long commit, and committed its own batches cold)."""
    feeder = worker(settings)
    client = feeder.store.redis
    with catalog_lock(client, settings.catalog_path, 10, 10):  # another holder, in a commit
        thread, outcome = in_thread(feeder, "f1", [product("F1")])
        wait_for(lambda: client.llen(key(settings)) == 1)
        client.set(notice_key(settings), "another-holder", px=DRAIN_NOTICE_MS)
    until = time.monotonic() + 1.5  # six times the 0.25 s after which it would try the lock again
    while time.monotonic() < until:
        client.set(notice_key(settings), "another-holder", px=DRAIN_NOTICE_MS)  # as each of its commits renews it
        assert client.llen(key(settings)) == 1 and not outcome, outcome  # left for that holder to take
        time.sleep(0.05)
    client.delete(notice_key(settings))  # its drain ended without taking it (it stopped, say)
    thread.join(WAIT_S)
    assert isinstance(outcome.get("result"), BatchResult) and outcome["result"].status.value == "applied", outcome


@pytest.mark.parametrize("expiry", [None, 3_600_000])
def test_a_drain_notice_that_would_outlive_a_holders_is_not_believed(settings: Settings, expiry: int | None) -> None:
    feeder = worker(settings)
    client = feeder.store.redis
    client.set(notice_key(settings), "forged", px=expiry)  # anyone with Redis access can write one
    with catalog_lock(client, settings.catalog_path, 10, 10):
        thread, outcome = in_thread(feeder, "f1", [product("F1")])
        wait_for(lambda: client.llen(key(settings)) == 1)
    thread.join(WAIT_S)
    assert isinstance(outcome.get("result"), BatchResult) and outcome["result"].status.value == "applied", outcome


def test_a_holder_that_carried_staged_batches_says_it_drains_until_its_drain_ends(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging_module, "DRAIN_NOTICE_MS", 600_000)  # gone only if the holder removes it
    holder, feeder = worker(settings), worker(settings)
    client = holder.store.redis
    feeding = feeder.committer._staging
    assert feeding is not None
    feeding.stage([request(feeder, "f1", [product("F1")])])
    holder.committer.apply(request(holder, "h1", [product("H1")]))  # carried f1: its drain follows
    assert client.get(notice_key(settings)) == holder.committer._token.encode()
    assert 0 < client.pttl(notice_key(settings)) <= 600_000
    wait_for(lambda: client.get(notice_key(settings)) is None, WAIT_S)  # nothing more staged: the drain ended
    lone = worker(settings)  # a holder nobody feeds never says it drains
    lone.committer.apply(request(lone, "l1", [product("L1")]))
    assert client.get(notice_key(settings)) is None


def test_staged_batches_no_holder_takes_within_the_lock_timeout_fail_for_a_retry_and_are_taken_back(
    settings: Settings,
) -> None:
    feeder = worker(settings.model_copy(update={"lock_timeout": 0.5}))
    client = feeder.store.redis
    with catalog_lock(client, settings.catalog_path, 10, 10):
        thread, outcome = in_thread(feeder, "f1", [product("F1")])
        thread.join(WAIT_S)
        assert client.llen(key(settings)) == 0
    assert isinstance(outcome.get("error"), LockTimeoutError), outcome


@pytest.mark.parametrize("entry", [
    b"not json",
    b'{"batch_id": "x"}',
    orjson.dumps({"batch_id": "forged", "sequence": 2**53 - 2, "source": "s", "final_attempt": True,
                  "records": [{"product_id": "FORGED"}], "reply_to": "catalog-ingest:staging:reply:" + "0" * 32}),
    orjson.dumps({"batch_id": "elsewhere", "sequence": None, "source": "s", "final_attempt": True,
                  "records": [{"product_id": "FORGED"}], "reply_to": "some:other:key"}),
    b"x" * (2048 + 64 * 1024 + 1),  # over the batch limit (max_batch_bytes 2048 here) and its envelope
], ids=["garbage", "wrong-shape", "sequence-never-issued", "answer-anywhere", "too-large"])
def test_a_hostile_staged_entry_is_dropped_with_a_warning_and_the_holders_commit_goes_on(
    settings: Settings, entry: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    holder = worker(settings.model_copy(update={"max_batch_bytes": 2048}))
    client = holder.store.redis
    client.rpush(key(settings), entry)
    with caplog.at_level(logging.WARNING, logger="worker.staging"):
        assert holder.committer.apply(request(holder, "h1", [product("H1")])).status.value == "applied"
    assert "dropped" in caplog.text
    state = read_state(state_path(settings.catalog_path))
    assert state is not None and set(state.ledger) == {f"seed-{id(holder)}", "h1"}
    assert client.llen(key(settings)) == 0 and not client.keys("some:other:key")


def test_a_staging_key_of_another_type_makes_a_worker_wait_for_the_lock_instead(settings: Settings) -> None:
    feeder = worker(settings)
    client = feeder.store.redis
    client.set(key(settings), "not a list")  # anyone with Redis access can do this
    with catalog_lock(client, settings.catalog_path, 10, 10):
        thread, outcome = in_thread(feeder, "f1", [product("F1")])
        time.sleep(0.3)
    thread.join(WAIT_S)
    assert isinstance(outcome.get("result"), BatchResult) and outcome["result"].status.value == "applied", outcome


def test_a_holder_takes_staged_entries_in_order_only_while_they_fit_its_byte_budget(redis_url: str) -> None:
    import redis

    from worker.staging import pop_entries

    client = redis.Redis.from_url(redis_url)
    entries = [bytes([65 + n]) * 100 for n in range(5)]  # 100 bytes each
    client.rpush("staging-test", *entries)
    # Under 250 bytes taken: a third entry still starts (200 < 250), a fourth does not.
    assert pop_entries(client, "staging-test", 10, 1000, 250) == (0, entries[:3])
    assert pop_entries(client, "staging-test", 10, 1000, 1) == (0, entries[3:4])  # at least one
    assert client.lrange("staging-test", 0, -1) == entries[4:]


def test_staged_batches_over_the_holders_byte_budget_wait_for_its_next_commit(settings: Settings) -> None:
    small = settings.model_copy(update={"group_commit_max_bytes": 1024})
    holder, feeders = worker(small), [worker(small) for _ in range(3)]  # one staged batch each
    with catalog_lock(holder.store.redis, small.catalog_path, 5, 5):
        threads = [in_thread(feeder, f"staged-{n}", [product(f"S{n}", product_name="x" * 1100)])
                   for n, feeder in enumerate(feeders)]
        wait_for(lambda: holder.store.redis.llen(key(small)) == 3, WAIT_S)
    group_sizes = []
    real_take = holder.committer._staging.take  # type: ignore[union-attr]

    def counting_take(limit: int, spent_bytes: int = 0) -> Any:
        taken = real_take(limit, spent_bytes)
        group_sizes.append(len(taken))
        return taken

    holder.committer._staging.take = counting_take  # type: ignore[union-attr, method-assign]
    holder.committer.apply(request(holder, "holders-own", [product("H")]))
    for thread, outcome in threads:
        thread.join(WAIT_S)
        assert outcome["result"].status.value == "applied", outcome
    # Each entry is over 1 KiB, the budget: one at a time, and nothing more after the merge of
    # the commit that took it (the budget is the whole commit's).
    assert group_sizes[:2] == [1, 0]


def test_answers_reach_each_rounds_reply_list_in_order_with_one_push_per_round(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    answers = [("reply:a", b"a1"), ("reply:b", b"b1"), ("reply:a", b"a2"), ("reply:a", b"a3"), ("reply:b", b"b2")]
    client.config_resetstat()
    push_answers(client, answers)
    assert client.lrange("reply:a", 0, -1) == [b"a1", b"a2", b"a3"]
    assert client.lrange("reply:b", 0, -1) == [b"b1", b"b2"]
    assert 0 < client.ttl("reply:a") <= REPLY_TTL_S and 0 < client.ttl("reply:b") <= REPLY_TTL_S
    # A holder answers a whole group at once: one RPUSH per round, not one per batch.
    assert client.info("commandstats")["cmdstat_rpush"]["calls"] == 2
