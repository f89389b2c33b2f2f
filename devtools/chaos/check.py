"""Judging a chaos run: the catalog must equal the batches applied one by one in sequence order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devtools.chaos.plan import ChaosPlan
from devtools.reference_model import apply_batch
from worker.state import CatalogState

ACCEPTED = {"applied", "unchanged"}
EXPECTED_STATUS = {"patch": ACCEPTED, "create": ACCEPTED, "ghost": {"rejected"}}


@dataclass
class ChaosReport:
    batches: int
    kills: int = 0
    redis_restarts: int = 0
    duplicates_caught: int = 0
    superseded_fields: int = 0
    redis_wipes: int = 0
    commit_kills: int = 0
    pauses: int = 0
    malformed: int = 0
    lost_and_resubmitted: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return len(self.problems)

    def faults_line(self) -> str:
        return (f"faults: Redis killed inside a commit {self.commit_kills}, Redis restarted empty "
                f"{self.redis_wipes}, writers paused {self.pauses}, malformed messages {self.malformed}, "
                f"batches lost and resubmitted {self.lost_and_resubmitted}")

    def last_line(self) -> str:
        return (f"batches: {self.batches}, kills: {self.kills}, redis restarts: {self.redis_restarts}, "
                f"duplicates caught: {self.duplicates_caught}, superseded fields: {self.superseded_fields}, "
                f"mismatches: {self.mismatches}")


def check_run(plan: ChaosPlan, catalog: list[dict[str, Any]], state: CatalogState,
              submissions: dict[str, list[str]], report: ChaosReport) -> ChaosReport:
    problems = report.problems
    for batch in plan.batches:
        submitted = submissions.get(batch.batch_id, [])
        entry = state.ledger.get(batch.batch_id)
        if batch.kind == "refused":
            if entry is not None or set(submitted) != {"refused"}:
                problems.append(f"{batch.batch_id}: should have been refused by the producer, got {submitted}")
            continue
        if not submitted or any(s.startswith("gave up") or s == "never final" for s in submitted):
            problems.append(f"{batch.batch_id}: the producer could not queue it or see it final ({submitted})")
        report.lost_and_resubmitted += submitted.count("lost")
        if entry is None:
            problems.append(f"{batch.batch_id}: no final outcome recorded")
        elif entry["status"] not in EXPECTED_STATUS[batch.kind]:
            problems.append(f"{batch.batch_id} ({batch.kind}): ended {entry['status']}: {entry.get('errors', [])[:1]}")

    accepted = sorted(
        (state.ledger[b.batch_id]["sequence"], b) for b in plan.batches
        if b.batch_id in state.ledger and state.ledger[b.batch_id]["status"] in ACCEPTED
    )
    # The reference is a separate, simple model (devtools/reference_model.py), not the merge under test.
    reference = plan.initial
    for sequence, batch in accepted:
        after = apply_batch(reference, batch.items)
        if after is None:
            problems.append(f"{batch.batch_id} (sequence {sequence}) was accepted but fails in sequence order")
            continue
        reference = after
    problems.extend(_differences(reference, catalog))

    applied = sum(1 for entry in state.ledger.values() if entry["status"] == "applied")
    if state.applied != applied:
        problems.append(f"{state.applied} applications for {applied} applied batches: something applied twice")
    if not 0 < state.commits <= applied:
        problems.append(f"{state.commits} catalog commits for {applied} applied batches")
    report.duplicates_caught = state.duplicates
    report.superseded_fields = sum(entry.get("superseded_fields", 0) for entry in state.ledger.values())
    return report


def _differences(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    problems = []
    want = {p["product_id"]: p for p in expected}
    got = {p["product_id"]: p for p in actual}
    for product_id in sorted(want.keys() | got.keys()):
        if want.get(product_id) != got.get(product_id):
            problems.append(f"{product_id}: catalog {got.get(product_id)} != reference {want.get(product_id)}")
    if not problems and [p["product_id"] for p in expected] != [p["product_id"] for p in actual]:
        problems.append("the products are right but in another order than in sequence order")
    return problems
