"""A group committer's batches while they wait in the staging list (worker/group_commit.py):
each batch's slot, the round they were staged in, their answers settled, and taking back what
no holder answered. The protocol, steps 1-6: docs/commit-protocol.md, "Staging"."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from catalog_core.errors import CatalogError, ProductNotYetCreatedError
from schemas import BatchResult
from schemas.staging import StagedOutcome
from worker.staging import Round, StagingArea, Taken
from worker.write_attempt import BatchRequest, Outcome

log = logging.getLogger("worker.group_commit")


@dataclass(eq=False)
class Slot:
    """One thread's batch in the committer: its outcome once known, and whether its thread may return."""

    request: BatchRequest
    outcome: Outcome | BaseException | None = None
    done: bool = False
    group_size: int = field(default=0)


@dataclass
class Handover:
    """A leader's batches while they wait in the staging list: the round, and its slots in its order."""

    round: Round | None = None
    slots: list[Slot] = field(default_factory=list)


def settle(slots: Sequence[Slot], answers: Sequence[StagedOutcome]) -> None:
    """Each answer to the first open slot of its batch id (a batch may be there twice)."""
    for answer in answers:
        slot = next((s for s in slots if s.outcome is None and s.request.batch_id == answer.batch_id), None)
        if slot is None:
            continue  # stale (an earlier round's) or not ours
        if answer.result is not None:
            slot.outcome = answer.result
        else:
            slot.outcome = ProductNotYetCreatedError(answer.retry or "retry")


def take_back(staging: StagingArea | None, handover: Handover) -> list[Slot]:
    """Under the lock: our staged entries no holder took come back; those taken are answered by
    now (a holder answers before it releases the lock), or their holder is gone: both kinds
    left unanswered are ours to commit (the ledger tells a duplicate)."""
    staged, handover.round = handover.round, None
    if staged is None or staging is None:
        return []
    open_slots = [index for index, slot in enumerate(handover.slots) if slot.outcome is None]
    try:
        withdrawn = staging.withdraw(staged, open_slots)
        settle([handover.slots[i] for i in open_slots if i not in withdrawn], staging.answers_now(staged))
    except redis.RedisError as exc:
        log.warning("could not take back staged batches (%s); committing them here", exc)
    return [handover.slots[i] for i in open_slots if handover.slots[i].outcome is None]


def withdraw_quietly(staging: StagingArea | None, handover: Handover) -> None:
    """Take back what no holder took, before giving up on them (each comes back as a retry)."""
    if handover.round is not None and staging is not None:
        try:
            staging.withdraw(handover.round, [i for i, s in enumerate(handover.slots) if s.outcome is None])
        except redis.RedisError as exc:
            log.warning("could not take back staged batches (%s); a holder may commit them first", exc)


def answer_to(item: Taken, outcome: Outcome) -> StagedOutcome:
    """A holder's answer for a staged batch it carried: its result, or the retry it needs."""
    if isinstance(outcome, BatchResult):
        return StagedOutcome(batch_id=item.request.batch_id, result=outcome)
    assert isinstance(outcome, CatalogError)
    return StagedOutcome(batch_id=item.request.batch_id, retry=str(outcome))
