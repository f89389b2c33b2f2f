"""Group commit: the batches a worker's threads bring while a commit runs go together in the next,
and with staging, so do the batches of the other workers.

Why: a commit costs one catalog write (temp file, fsync, renames), whatever the number of
batches it carries, so at one batch per commit the disk caps throughput at a few batches per
second, however many workers run. Here the threads of one worker process (Celery's ``threads``
pool) hand their batch to a ``GroupCommitter``. The first thread to find nobody committing
becomes the leader: it takes every batch waiting, and once it holds the catalog lock every
batch that came meanwhile (up to ``max_batches`` in all), and applies them in one locked write
(``CatalogStore.apply_group``: one lock, one catalog write, one backup, one state write) and
hands each thread its own outcome. Threads that arrived meanwhile wait; when the leader is
done, one of them leads the next group. Nothing runs in the background, but for a holder that
other workers feed: a thread of its own goes on taking their staged batches (``_drain``).

Staging (worker/staging.py, worker/staged_handover.py; the protocol, steps 1-6, in
docs/commit-protocol.md, "Staging"): a leader that finds the lock held stages its group in Redis
for the holder, which commits it with its own and answers; so one worker keeps the lock, its
catalog cached, while the others feed it. Batches that arrive meanwhile join the staged ones.

Every batch's outcome is given only after the commit that carries it is durable, so a thread
returns (and Celery acknowledges the message, ``acks_late``) only then. A process killed in the
middle of a group commit acknowledged none of its batches: they are redelivered, and the
ledger answers those that the commit did carry as duplicates.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis

from catalog_core.errors import LockBusyError, LockTimeoutError, RedisUnavailableError
from schemas import BatchResult
from worker.staged_handover import Handover, Slot, answer_to, settle, take_back, withdraw_quietly
from worker.staging import StagingArea, Taken
from worker.write_attempt import BatchRequest, Outcome

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often a leader whose batches are staged tries the lock itself
# A leader that saw another holder at work less than this ago (it answered our staged batches,
# or held the lock when we tried) does not try the lock (it stages, and waits): that holder is
# busy and will take them, where taking the lock in the instant it is free between two of its
# commits would make each worker's next commit first read the other's. Past this without an
# answer, the holder may be idle or gone: try.
STAY_WITH_HOLDER_S = 0.25
# A worker whose copy of the catalog is not the last commit's (another worker committed since)
# stages its batches and waits this long for a holder before it tries the lock itself: a holder
# with the files in memory commits them at once, where this worker would first read them.
COLD_WAIT_S = 0.1

ApplyGroup = Callable[..., list[Outcome]]  # CatalogStore.apply_group


class GroupCommitter:
    """Applies batches from many threads in as few commits as they allow; one per worker process."""

    def __init__(self, apply_group: ApplyGroup, max_batches: int, staging: StagingArea | None = None,
                 stage_timeout: float = 60.0, knows_latest: Callable[[], bool] = lambda: True) -> None:
        self._apply_group = apply_group
        self._knows_latest = knows_latest  # CatalogStore.knows_latest: our copy is the last commit's
        self._max_batches = max(1, max_batches)
        self._staging = staging
        self._stage_timeout = stage_timeout
        self._changed = threading.Condition()
        self._waiting: list[Slot] = []
        self._leading = False
        self._holder_seen_at = float("-inf")  # when another holder last answered us, or held the lock
        self._fed = False  # whether our last commit carried other workers' staged batches
        self._token = uuid.uuid4().hex  # names this committer in its drain notice (worker/staging.py)
        self._announced = False  # whether a drain notice of ours may be up
        self._stopping = threading.Event()  # set when the worker shuts down: no more draining
        self._drainer: threading.Thread | None = None

    def apply(self, request: BatchRequest) -> BatchResult:
        """The batch's own outcome, once a durable commit carries it; its own error otherwise."""
        slot = Slot(request)
        with self._changed:
            self._waiting.append(slot)
        while True:
            with self._changed:
                while not slot.done and self._leading:
                    self._changed.wait()
                if slot.done:
                    return self._outcome(slot)
                # Lead: take the longest-waiting batches (ours among them unless over the cap).
                self._leading = True
                group, self._waiting = self._waiting[: self._max_batches], self._waiting[self._max_batches:]
            draining = False
            try:
                self._commit(group)
                draining = self._start_draining()
            finally:
                if not draining:
                    self._step_down()

    def _step_down(self) -> None:
        if self._announced and self._staging is not None:
            self._announced = False
            self._staging.end_drain(self._token)  # no drain follows: the others may take the lock
        with self._changed:
            self._leading = False
            self._changed.notify_all()

    def _start_draining(self) -> bool:
        """Hand the lead to a drain thread when other workers feed us; whether it was."""
        if self._staging is None or not self._fed or self._stopping.is_set():
            return False
        # Known before it starts: a shutdown in between still waits for it (or it sees the stop first).
        self._drainer = threading.Thread(target=self._drain_then_step_down, name="catalog-drain", daemon=True)
        try:
            self._drainer.start()
        except RuntimeError as exc:  # no thread to be had: our batches are committed all the same
            log.warning("could not start draining the staging list (%s); its workers will commit it", exc)
            self._drainer = None
            return False
        return True

    def stop_draining(self, timeout: float) -> None:
        """No more draining (the worker is shutting down): the drain ends after the commit it is in,
        which is waited for up to ``timeout`` seconds, so that the process does not exit holding
        the lock (the other workers would wait for its expiry)."""
        self._stopping.set()
        drainer = self._drainer
        if drainer is not None and drainer.ident is not None:  # started (one not yet started sees the stop)
            drainer.join(timeout)

    def _drain_then_step_down(self) -> None:
        try:
            self._drain()
        except Exception:  # nothing is lost: a staged batch nobody answers is taken back by its worker
            log.exception("draining the staging list failed")
        finally:
            self._step_down()

    def _drain(self) -> None:
        """Staging step 6: while other workers feed us and nothing of ours waits here, commit their
        batches as they are staged (lock taken for each commit), in a thread of its own, as the
        leader; stop once none came for ``STAY_WITH_HOLDER_S`` (as long as their workers wait for
        us), the lock is held by another, a commit fails, or the worker shuts down. Without it,
        a burst's last staged batches waited for a worker to give up on us and read our files."""
        last_taken = time.monotonic()
        while self._staging is not None and self._fed and not self._stopping.is_set():
            with self._changed:
                if self._waiting:
                    return  # one of ours leads the next commit, and takes the staged batches with it
            if self._staging.pending():
                self._commit([], holding_only=True)
                last_taken = time.monotonic()
            elif time.monotonic() - last_taken < STAY_WITH_HOLDER_S:
                # Their workers still count on us for as long: what they stage meanwhile is ours
                # to take, where the first to give up on us would take the lock, files unread.
                self._stopping.wait(POLL_S / 2)
            else:
                return

    def _commit(self, group: list[Slot], holding_only: bool = False) -> None:
        """Give every slot of ``group`` (which grows by the batches gathered) its outcome.
        ``holding_only``: commit only if the lock is free now (staged batches, and ours that come)."""
        interrupted: BaseException | None = None
        try:
            if holding_only:
                try:
                    self._lead(group, wait=False, handover=Handover())
                except LockBusyError:
                    self._fed = False  # another worker holds the lock: nothing was gathered
            elif self._staging is None:
                self._lead(group, wait=True, handover=Handover())
            else:
                self._lead_or_stage(group)
        except BaseException as exc:  # nothing of what is left was committed
            self._fed = False
            for slot in group:
                if slot.outcome is None:
                    slot.outcome = exc
            interrupted = None if isinstance(exc, Exception) else exc
        with self._changed:
            for slot in group:
                slot.done, slot.group_size = True, len(group)
            self._changed.notify_all()  # their threads return now, even while this one drains
        if interrupted is not None:
            raise interrupted  # a thread told to stop (the pool shutting down) still stops

    def _lead_or_stage(self, group: list[Slot]) -> None:
        assert self._staging is not None
        handover = Handover()
        deadline = time.monotonic() + self._stage_timeout
        first_try = time.monotonic() + (0.0 if self._knows_latest() else COLD_WAIT_S)
        while any(slot.outcome is None for slot in group):
            now = time.monotonic()
            if now >= first_try and now - self._holder_seen_at >= STAY_WITH_HOLDER_S:
                if handover.round is not None and self._staging.another_drains(self._token):
                    # A holder between two commits of its drain: it takes ours in the next, where
                    # taking the lock now would make our commit read its files first.
                    self._holder_seen_at = now
                else:
                    try:
                        self._lead(group, wait=False, handover=handover)
                        return
                    except LockBusyError:
                        self._holder_seen_at = time.monotonic()
            try:
                if handover.round is None:
                    handover.slots = [slot for slot in group if slot.outcome is None]
                    handover.round = self._staging.stage([slot.request for slot in handover.slots])
                else:
                    self._stage_arrivals(group, handover)
                answers = self._staging.wait(handover.round, POLL_S)
            except redis.RedisError as exc:
                if handover.round is None:  # nothing staged: queue for the lock as without staging
                    log.warning("could not stage %d batches (%s); waiting for the lock", len(group), exc)
                    self._lead(group, wait=True, handover=handover)
                    return
                raise RedisUnavailableError(f"Redis failed while waiting for staged batches: {exc}") from None
            if answers:
                self._holder_seen_at = time.monotonic()
                deadline = self._holder_seen_at + self._stage_timeout  # the holder is at work
            settle(handover.slots, answers)
            self._release_answered(group)
            if time.monotonic() > deadline and any(slot.outcome is None for slot in group):
                withdraw_quietly(self._staging, handover)  # the retry of each comes back through the queue
                raise LockTimeoutError(f"another writer held the lock for over {self._stage_timeout:g}s "
                                       "(CATALOG_LOCK_TIMEOUT), and answered none of the batches staged for it "
                                       "in that time")

    def _stage_arrivals(self, group: list[Slot], handover: Handover) -> None:
        """Batches that came here while ours wait for the holder join them in the staging list now
        (the group up to ``max_batches``): they waited for every answer of the round before, a
        whole commit of the holder, and a burst's stagers fed it a batch or two a commit."""
        assert self._staging is not None and handover.round is not None
        with self._changed:
            room = self._max_batches - len(group)
            if room <= 0 or not self._waiting:
                return
            arrivals, self._waiting = self._waiting[:room], self._waiting[room:]
        try:
            self._staging.stage([slot.request for slot in arrivals], joining=handover.round)
        except BaseException:
            with self._changed:
                self._waiting[:0] = arrivals  # not staged: the next leader takes them
            raise
        group.extend(arrivals)
        handover.slots.extend(arrivals)

    def _release_answered(self, group: list[Slot]) -> None:
        """Slots the holder answered return now (the commit that carried them is durable), not
        once the whole group is answered: it grows while its batches wait (``_stage_arrivals``)."""
        with self._changed:
            answered = [slot for slot in group if slot.outcome is not None and not slot.done]
            for slot in answered:
                slot.done, slot.group_size = True, len(group)
            if answered:
                self._changed.notify_all()

    def _lead(self, group: list[Slot], wait: bool, handover: Handover) -> None:
        """Commit ``group``'s open batches, those waiting here and staged ones, holding the lock
        (waiting for it only if ``wait``, else ``LockBusyError`` when it is held)."""
        carried: list[Slot | Taken] = [] if handover.round is not None else [s for s in group if s.outcome is None]
        gathered = False  # whether ``gather`` ran already (it runs again after the merge)

        def gather() -> list[BatchRequest]:
            """Once the lock is held, and once more after the merge of what joined: our staged
            batches no holder answered, batches that came while the leader waited here, and other
            workers' staged batches join (``max_batches`` and the byte budget for all together)."""
            nonlocal gathered
            joining: list[Slot | Taken] = [*take_back(self._staging, handover)]
            with self._changed:
                room = self._max_batches - len(carried) - len(joining)
                local, self._waiting = self._waiting[:max(room, 0)], self._waiting[max(room, 0):]
            group.extend(local)
            joining.extend(local)
            staged = [item for item in carried if isinstance(item, Taken)]
            # After a merge, only a holder others feed asks for more (one more round trip).
            if self._staging is not None and (not gathered or staged):
                spent = sum(len(item.entry) for item in staged)
                joining.extend(self._staging.take(self._max_batches - len(carried) - len(joining), spent))
            gathered = True
            carried.extend(joining)
            return [item.request for item in joining]

        def deliver(outcomes: list[Outcome]) -> None:
            """Under the lock, the commit durable: answer the staged batches, and (a drain follows a
            commit that carried some) renew our drain notice with the answers."""
            if self._staging is not None:
                answers = [(item, answer_to(item, outcome))
                           for item, outcome in zip(carried, outcomes, strict=True) if isinstance(item, Taken)]
                drains = bool(answers) and not self._stopping.is_set()
                self._announced = self._announced or drains
                self._staging.answer(answers, self._token if drains else None)

        try:
            outcomes = self._apply_group([item.request for item in carried], gather, deliver, wait_for_lock=wait)
        except BaseException:
            if self._staging is not None:
                self._staging.give_back([item for item in carried if isinstance(item, Taken)])
            raise
        for item, outcome in zip(carried, outcomes, strict=True):
            if isinstance(item, Slot):
                item.outcome = outcome
        staged = sum(isinstance(item, Taken) for item in carried)
        self._fed = staged > 0
        if len(carried) > 1:
            log.info("group commit: %d batches in one commit%s", len(carried),
                     f" ({staged} staged by other workers)" if staged else "")

    @staticmethod
    def _outcome(slot: Slot) -> BatchResult:
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        assert slot.outcome is not None
        return slot.outcome

