"""Horizontal scaling: several worker processes and several producer processes on one catalog.

4 producer processes enqueue 60 batches at the same moment (they wait on a start file); 3
`celery worker` processes apply them. Every batch creates its own product and patches
``description_short`` of one of a few shared products to its own batch id. Each batch gets a
sequence number when it is enqueued (its submission order); workers may run batches in another
order, and the store keeps the catalog as if they had run in sequence order. So:
- nothing is lost: every batch is applied, once, and every new product exists;
- each shared product ends with the value of the highest-sequence batch that patched it; a
  batch that ran after a higher-sequence one reports its patch as superseded;
- new products stand in the catalog in sequence order, whatever order the workers ran in;
- every write saw the latest catalog: replaying the backups in order (each is the catalog as
  it was before one write, which may carry several batches) shows each write adding exactly
  its batches' products on top of the previous version, and at most their patches, in
  sequence order, and only ever over a lower sequence.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import Product
from tests.e2e.worker_fixtures import REPO_ROOT, Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product
from worker.backups import list_backups

pytestmark = pytest.mark.slow

WORKERS = 3
PRODUCERS = 4
BATCHES_PER_PRODUCER = 15
SHARED = ("SHARED-0", "SHARED-1", "SHARED-2")
FILLER = 300  # a catalog of a few hundred KB: each write takes long enough for the workers to overlap
WAIT_FOR_BATCHES_S = 120.0

# One producer process: waits for the start file, then submits its batches as fast as it can
# and prints their ids. Batch k of producer p creates NEW-p-k and patches one shared product.
PRODUCER_SCRIPT = """
import os, sys, time, orjson
from pathlib import Path
from catalog_core.settings import load_settings
from producers.api import Producer

p, count, go = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
shared = orjson.loads(sys.argv[4])
producer = Producer(load_settings())
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
ids = []
for k in range(count):
    batch_id = f"scale-p{p}-k{k:02d}"
    records = [
        {"product_id": f"NEW-{p}-{k}", "product_name": f"New {p}/{k}", "category": f"producer {p}",
         "pricing": [{"tier_name": "Adult", "price_aed": float(10 * p + k)}], "inclusions": []},
        {"product_id": shared[(p + k) % len(shared)], "description_short": batch_id},
    ]
    ids.append(producer.submit(records, batch_id=batch_id, source=f"producer-{p}").batch_id)
print(orjson.dumps(ids).decode())
"""


def new_id(batch_id: str) -> str:
    _, p, k = batch_id.split("-")
    return f"NEW-{int(p[1:])}-{int(k[1:])}"


def shared_of(batch_id: str) -> str:
    _, p, k = batch_id.split("-")
    return SHARED[(int(p[1:]) + int(k[1:])) % len(SHARED)]


def by_id(products: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["product_id"]: p for p in products}


def batches_of_write(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], carried: set[str],
                     sequence_of: dict[str, int]) -> None:
    """Fails unless the write that turned ``before`` into ``after`` is exactly the batches ``carried``
    (those whose results name ``before``'s backup), applied in sequence order on top of ``before``."""
    assert carried, "a write that carried no batch"
    assert not set(before) - set(after), "a write lost products"
    assert set(after) - set(before) == {new_id(b) for b in carried}, "a write created others' products"
    changed = {pid for pid in before if before[pid] != after[pid]}
    assert changed <= {shared_of(b) for b in carried}, f"the write of {sorted(carried)} changed {sorted(changed)}"
    for shared in {shared_of(b) for b in carried}:  # each patch lands over a lower sequence only
        newest = max((b for b in carried if shared_of(b) == shared), key=sequence_of.get)
        kept = before[shared]["description_short"]
        if kept == "seed" or sequence_of[kept] < sequence_of[newest]:
            assert after[shared] == {**before[shared], "description_short": newest}, f"{newest} changed more"
        else:
            assert after[shared] == before[shared], f"{shared}: a lower sequence overwrote {kept}"


def test_three_workers_apply_sixty_batches_from_four_producers_without_losing_any_write(stack: Stack) -> None:
    # Stored as the workers store products (every field present), so a write that patches one
    # field changes exactly that field.
    seed = [Product.model_validate(product(pid, description_short="seed")).to_record() for pid in SHARED]
    seed += [Product.model_validate(product(f"FILL-{n:04d}", description_long="x" * 500)).to_record()
             for n in range(FILLER)]
    stack.seed(seed)
    go = stack.tmp_path / "go"
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER_SCRIPT, str(p), str(BATCHES_PER_PRODUCER), str(go),
             orjson.dumps(SHARED).decode()],
            env=stack.env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for p in range(PRODUCERS)
    ]
    try:
        stack.start_workers(WORKERS)
        go.touch()  # every producer is up by now (the workers took longer): they enqueue together
        outputs = [proc.communicate(timeout=90) for proc in producers]
    finally:
        for proc in producers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    for proc, (_, stderr) in zip(producers, outputs, strict=True):
        assert proc.returncode == 0, stderr
    batch_ids = [batch_id for stdout, _ in outputs for batch_id in orjson.loads(stdout)]
    assert len(batch_ids) == len(set(batch_ids)) == PRODUCERS * BATCHES_PER_PRODUCER

    started = time.monotonic()
    states = stack.wait_all([stack.producer.handle(b) for b in batch_ids], WAIT_FOR_BATCHES_S)
    elapsed = time.monotonic() - started
    print(f"{len(batch_ids)} batches applied by {WORKERS} workers in {elapsed:.1f}s after the last enqueue")

    statuses = {b: (s.result.status if s.result else f"{s.state}: {s.reason}") for b, s in states.items()}
    assert all(status == "applied" for status in statuses.values()), statuses
    results = {b: s.result for b, s in states.items() if s.result is not None}
    sequence_of = {b: r.sequence for b, r in results.items()}
    first = min(sequence_of.values())  # the counter's epoch start: consecutive from there, each once
    assert sorted(sequence_of.values()) == list(range(first, first + len(batch_ids))), sequence_of
    superseded = 0
    for batch_id, result in results.items():
        assert result.created == 1, result
        if result.updated == 1:
            assert not result.superseded, result
        else:  # a higher-sequence batch had already written the field: it is kept
            assert (result.updated, result.unchanged) == (0, 1), result
            [skipped] = result.superseded
            assert (skipped.product_id, skipped.field) == (shared_of(batch_id), "description_short")
            assert skipped.by_sequence > result.sequence
            superseded += 1
    print(f"{superseded} batch(es) ran after a higher-sequence patch of the same product (superseded)")

    # Every worker took part (the queue is shared, not pinned to one worker).
    for worker in stack.processes:
        assert "scale-p" in worker.log(), f"{worker.name} applied no batch\n{stack.logs()}"

    final_list = orjson.loads(stack.settings.catalog_path.read_bytes())
    final = by_id(final_list)
    assert set(final) == {p["product_id"] for p in seed} | {new_id(b) for b in batch_ids}
    # Products in sequence order, and each shared product has the value of its highest sequence.
    assert [p["product_id"] for p in final_list] == (
        [p["product_id"] for p in seed] + [new_id(b) for b in sorted(batch_ids, key=sequence_of.get)])
    for pid in SHARED:
        newest = max((b for b in batch_ids if shared_of(b) == pid), key=sequence_of.get)
        assert final[pid]["description_short"] == newest

    verified = stack.cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # One backup per write (a write may carry several batches: group commit, staging), and
    # replaying them shows every batch written exactly once, on top of the catalog the previous
    # write left, in the write whose backup its result names.
    backups = list_backups(stack.settings.catalog_path, stack.settings.backup_path)
    named = {Path(r.backup).name for r in results.values() if r.backup}
    assert named == {b.name for b in backups} and len(backups) <= len(batch_ids)
    versions = [by_id(orjson.loads(b.path.read_bytes())) for b in backups] + [final]
    assert versions[0] == by_id(seed)
    for backup, before, after in zip(backups, versions, versions[1:]):
        carried = {b for b, r in results.items() if r.backup and Path(r.backup).name == backup.name}
        batches_of_write(before, after, carried, sequence_of)
    print(f"{len(batch_ids)} batches in {len(backups)} writes")
