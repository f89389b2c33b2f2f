"""Planning the revert of one batch from its change event. Pure: no I/O.

A revert sets every field the batch wrote back to its value from before, except the fields a
later batch has written since (their field version is above the batch's sequence): those are
kept and listed with the batch that wrote them. Products the batch created are deactivated
(``active: false``). The plan is applied as a new batch (its own id, sequence, backup, event
and ledger entry), planned again under the lock against the state of that moment
(``CatalogStore.apply`` with a planner), so a batch that commits in between is never undone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.events import ChangeEvent

REVERT_PREFIX = "revert-of-"


@dataclass(frozen=True)
class KeptField:
    """A field the reverted batch wrote that a later batch wrote again: left as it is."""

    product_id: str
    field: str
    by_sequence: int
    by_batch: str | None  # None when that batch has left the ledger's window


@dataclass
class RevertPlan:
    """The records that undo ``batch_id``, and what is left alone, and why."""

    batch_id: str
    records: list[dict[str, Any]] = field(default_factory=list)
    kept: list[KeptField] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # created by the batch, removed (--delete-created)
    recreated: list[str] = field(default_factory=list)  # removed by the batch (a revert), put back

    @property
    def revert_id(self) -> str:
        return revert_batch_id(self.batch_id)


def revert_batch_id(batch_id: str) -> str:
    """One id per reverted batch: running a revert twice answers ``duplicate`` the second time."""
    return f"{REVERT_PREFIX}{batch_id}"


def plan_revert(event: ChangeEvent, versions: Mapping[str, Mapping[str, int]],
                ledger: Mapping[str, Mapping[str, Any]], delete_created: bool = False) -> RevertPlan:
    """What undoing ``event``'s batch takes, given the current field versions and ledger.

    ``delete_created``: products the batch created are removed instead of deactivated, unless a
    later batch wrote any of their fields (then they are deactivated, and those fields listed).
    """
    writers = {entry.get("sequence"): batch_id for batch_id, entry in ledger.items()}
    plan = RevertPlan(event.batch_id)

    def later_writer(product_id: str, name: str) -> KeptField | None:
        written = versions.get(product_id, {}).get(name, 0)
        if written > event.sequence:
            return KeptField(product_id, name, written, writers.get(written))
        return None

    for change in event.changes:
        product_id = change.product_id
        if change.deleted:  # the batch removed it (a revert): put it back as it was
            plan.records.append({f.field: f.old for f in change.fields})
            plan.recreated.append(product_id)
            continue
        if change.created and delete_created:
            later = [kept for f in change.fields if (kept := later_writer(product_id, f.field)) is not None]
            if not later:
                plan.deleted.append(product_id)
                continue
            plan.kept.extend(kept for kept in later if kept.field != "active")  # "active" is listed below
        if change.created:
            kept = later_writer(product_id, "active")
            if kept is not None:
                plan.kept.append(kept)
            else:
                plan.records.append({"product_id": product_id, "active": False})
                plan.deactivated.append(product_id)
            continue
        record: dict[str, Any] = {"product_id": product_id}
        for change_of_field in change.fields:
            kept = later_writer(product_id, change_of_field.field)
            if kept is not None:
                plan.kept.append(kept)
            else:
                record[change_of_field.field] = None if change_of_field.old_absent else change_of_field.old
        if len(record) > 1:
            plan.records.append(record)
    return plan
