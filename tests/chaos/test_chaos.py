"""The chaos suite, short and seeded: workers killed and paused, Redis killed (inside commits) and
restarted, once empty, malformed messages, duplicates sent.

CI runs it for several seeds, each with Redis restarted (up to twice): a failure that shows in half of
the runs (as the worker crash after a Redis restart did, issue 7) cannot pass by luck. Each run
takes about 25 s. The long version is for soak runs: `catalog chaos --seed N --batches 2000
--kills 60` (see README).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.chaos.check import ChaosReport, check_run
from devtools.chaos.plan import make_plan
from worker.merge import merge_batch
from worker.state import CatalogState

pytestmark = pytest.mark.slow

SUMMARY = re.compile(r"^batches: (\d+), kills: (\d+), redis restarts: (\d+), duplicates caught: (\d+), "
                     r"superseded fields: (\d+), mismatches: (\d+)$")


SEEDS = [11, 12, 13]  # 11: the seed of the runs in issue 7
REDIS_RESTARTS = 2
FAULTS = re.compile(r"^faults: Redis killed inside a commit (\d+), Redis restarted empty (\d+), writers paused "
                    r"(\d+), malformed messages (\d+), batches lost and resubmitted (\d+)$")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_seeded_chaos_run_ends_with_the_catalog_of_sequence_order(tmp_path: Path, seed: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    result = subprocess.run(
        [sys.executable, "-m", "catalog_cli", "chaos", "--seed", str(seed), "--batches", "80", "--kills", "5",
         "--redis-restarts", str(REDIS_RESTARTS), "--redis-wipes", "1", "--pauses", "2", "--malformed", "3",
         "--timeout", "100", "--keep", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=140, env=env,
    )
    lines = result.stdout.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    faults = FAULTS.match(lines[-2]) if len(lines) > 1 else None
    assert match and faults, result.stdout[-3000:] + result.stderr[-3000:]
    batches, kills, restarts, _duplicates, _superseded, mismatches = map(int, match.groups())
    assert (batches, mismatches) == (80, 0), result.stdout[-5000:]
    assert restarts >= 1, result.stdout[-5000:]  # every kind fires at least once; the second may be skipped
    assert kills >= 1
    _inside, wipes, pauses, malformed, _lost = map(int, faults.groups())
    assert wipes == 1 and pauses >= 1 and malformed >= 1, lines[-2]
    assert result.returncode == 0


def test_the_plan_is_the_same_for_the_same_seed_and_mixes_every_kind() -> None:
    first, second = make_plan(5, 200, 3), make_plan(5, 200, 3)
    assert first.as_dict() == second.as_dict()
    kinds = {batch.kind for batch in first.batches}
    assert kinds == {"patch", "create", "refused", "ghost"}
    assert any(batch.send_twice for batch in first.batches)


def test_the_check_finds_a_lost_update() -> None:
    plan = make_plan(5, 20, 2)
    state = CatalogState()
    catalog = plan.initial
    for sequence, batch in enumerate(plan.batches, start=1):
        if batch.kind == "refused":
            continue
        outcome = merge_batch(catalog, batch.items)
        status = "rejected" if outcome.errors else ("applied" if outcome.changed else "unchanged")
        state.ledger[batch.batch_id] = {"status": status, "sequence": sequence, "errors": []}
        state.commits += status == "applied"
        state.applied += status == "applied"
        catalog = outcome.products if not outcome.errors else catalog
    submissions = {b.batch_id: ["refused" if b.kind == "refused" else "queued"] for b in plan.batches}
    clean = check_run(plan, catalog, state, submissions, ChaosReport(batches=20))
    assert clean.mismatches == 0, clean.problems
    tampered = [dict(p) for p in catalog]
    tampered[0]["category"] = "lost update"
    assert check_run(plan, tampered, state, submissions, ChaosReport(batches=20)).mismatches == 1
