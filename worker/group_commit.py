"""Group commit: the batches a worker's threads bring while a commit runs go together in the next.

Why: a commit costs one catalog write (temp file, fsync, renames), whatever the number of
batches it carries, so at one batch per commit the disk caps throughput at a few batches per
second, however many workers run. Here the threads of one worker process (Celery's ``threads``
pool) hand their batch to a ``GroupCommitter``. The first thread to find nobody committing
becomes the leader: it takes every batch waiting, and once it holds the catalog lock every
batch that came meanwhile (up to ``max_batches`` in all), and applies them in one locked write (``CatalogStore.apply_group``: one lock, one catalog write, one backup, one state
write) and hands each thread its own outcome. Threads that arrived meanwhile wait; when the
leader is done, one of them leads the next group. No thread runs for another's sake once its
own batch is done, and nothing runs in the background.

Every batch's outcome is given only after the commit that carries it is durable, so a thread
returns (and Celery acknowledges the message, ``acks_late``) only then. A process killed in the
middle of a group commit acknowledged none of its batches: they are redelivered, and the
ledger answers those that the commit did carry as duplicates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schemas import BatchResult
from worker.store import BatchRequest, Outcome

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Slot:
    request: BatchRequest
    outcome: Outcome | BaseException | None = None
    done: bool = False
    group_size: int = field(default=0)


class GroupCommitter:
    """Applies batches from many threads in as few commits as they allow; one per worker process."""

    def __init__(self, apply_group: Callable[[Sequence[BatchRequest], Callable[[], Sequence[BatchRequest]]],
                                             list[Outcome]], max_batches: int) -> None:
        self._apply_group = apply_group
        self._max_batches = max(1, max_batches)
        self._changed = threading.Condition()
        self._waiting: list[_Slot] = []
        self._leading = False

    def apply(self, request: BatchRequest) -> BatchResult:
        """The batch's own outcome, once a durable commit carries it; its own error otherwise."""
        slot = _Slot(request)
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
            try:
                self._commit(group)
            finally:
                with self._changed:
                    self._leading = False
                    self._changed.notify_all()

    def _commit(self, group: list[_Slot]) -> None:
        def gather() -> list[BatchRequest]:
            """Once the lock is held: every batch that came while the leader waited for it joins."""
            with self._changed:
                room = self._max_batches - len(group)
                taken, self._waiting = self._waiting[:room], self._waiting[room:]
            group.extend(taken)
            return [slot.request for slot in taken]

        interrupted: BaseException | None = None
        try:
            outcomes: Sequence[Outcome | BaseException] = self._apply_group(
                [slot.request for slot in group], gather)
        except BaseException as exc:  # the commit itself failed: nothing of the group was committed
            outcomes = [exc] * len(group)
            interrupted = None if isinstance(exc, Exception) else exc
        if len(group) > 1:
            log.info("group commit: %d batches in one commit", len(group))
        with self._changed:
            for slot, outcome in zip(group, outcomes, strict=True):
                slot.outcome, slot.done, slot.group_size = outcome, True, len(group)
        if interrupted is not None:
            raise interrupted  # a thread told to stop (the pool shutting down) still stops

    @staticmethod
    def _outcome(slot: _Slot) -> BatchResult:
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        assert slot.outcome is not None
        return slot.outcome
