"""One chaos producer process: submits its share of the plan, retrying through Redis outages,
and resubmitting what Redis lost (a restart without persistence), as a real producer must.

Run by the chaos runner as ``python -m devtools.chaos.producer PLAN INDEX OUT``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from catalog_core.celery_config import TASK_INGEST
from catalog_core.errors import BatchRefusedError, RedisUnavailableError
from catalog_core.sequence import next_sequence
from catalog_core.settings import load_settings
from devtools.chaos.plan import ChaosPlan, PlannedBatch
from producers.api import BatchHandle, Producer
from schemas import BatchMessage

RETRY_FOR_S = 120.0
FOLLOW_FOR_S = 300.0
PROGRESS_EVERY_S = 10.0


def say(line: str) -> None:
    """One line on stderr, which the runner keeps in this producer's log and quotes when it has to
    stop it: a producer still following batches at the run's end says which, and why."""
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


class ChaosProducer:
    """A producer that survives outages: fresh connections after each, the same batch ids throughout."""

    def __init__(self) -> None:
        self.producer = Producer(load_settings())

    def _reconnect(self) -> None:
        self.producer = Producer(self.producer.settings)
        time.sleep(0.5)

    def submit(self, batch: PlannedBatch, source: str) -> tuple[str, BatchHandle | None]:
        """Submit; through a Redis outage, keep retrying with the same batch id (safe: duplicates are caught)."""
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                return "queued", self.producer.submit(batch.items, batch_id=batch.batch_id, source=source)
            except BatchRefusedError:
                return "refused", None
            except RedisUnavailableError as exc:
                if time.monotonic() > deadline:
                    say(f"{batch.batch_id}: gave up submitting after {RETRY_FOR_S:g}s: {exc}")
                    return "gave up", None
                say(f"{batch.batch_id}: Redis unavailable while submitting ({exc}); retrying")
                self._reconnect()

    def send_blind(self, batch: PlannedBatch) -> str:
        """Queue the batch again as a producer that does not know it sent it (it crashed after sending):
        straight onto the queue, with a new sequence, so the workers' ledger must catch it."""
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                settings = self.producer.settings
                message = BatchMessage(batch_id=batch.batch_id, source="resend", items=batch.items,
                                       sequence=next_sequence(self.producer.redis, settings.queue))
                self.producer.app.send_task(TASK_INGEST, args=[message.model_dump(mode="json")],
                                            task_id=batch.batch_id, queue=settings.queue)
                return "resent"
            except (RedisUnavailableError, Exception) as exc:  # noqa: BLE001 - kombu raises several kinds
                if time.monotonic() > deadline:
                    return f"gave up resending: {exc}"
                self._reconnect()

    def follow(self, handles: dict[str, tuple[PlannedBatch, BatchHandle]], outcomes: dict[str, list[str]]) -> None:
        """Until every batch is final: a batch reported ``lost`` is submitted again, with the same id."""
        deadline = time.monotonic() + FOLLOW_FOR_S
        seen: dict[str, str] = {}
        progress_at = time.monotonic() + PROGRESS_EVERY_S
        while handles and time.monotonic() < deadline:
            if time.monotonic() >= progress_at:
                progress_at = time.monotonic() + PROGRESS_EVERY_S
                say(f"following {len(handles)} batch(es): " + ", ".join(
                    f"{batch_id} {seen.get(batch_id, '?')}" for batch_id in list(handles)[:10]))
            for batch_id, (batch, handle) in list(handles.items()):
                try:
                    state = handle.state()
                except RedisUnavailableError as exc:
                    say(f"{batch_id}: Redis unavailable while asking its state ({exc}); reconnecting")
                    self._reconnect()
                    break
                if seen.get(batch_id) != state.state:
                    seen[batch_id] = state.state
                    say(f"{batch_id}: {state.state}")
                if state.state == "lost":
                    outcomes[batch_id].append("lost")
                    status, again = self.submit(batch, "resubmitted after loss")
                    outcomes[batch_id].append(status)
                    if again is None:
                        del handles[batch_id]
                    else:
                        handles[batch_id] = (batch, again)
                elif state.final:
                    del handles[batch_id]
            time.sleep(0.2)
        for batch_id in handles:
            outcomes[batch_id].append("never final")


def main(plan_path: str, index: str, out_path: str) -> None:
    plan = ChaosPlan.from_dict(json.loads(Path(plan_path).read_text()))
    rng = random.Random(plan.seed * 1000 + int(index))
    producer = ChaosProducer()
    outcomes: dict[str, list[str]] = {}
    handles: dict[str, tuple[PlannedBatch, Any]] = {}
    resend: list[PlannedBatch] = []
    for batch in plan.for_producer(int(index)):
        status, handle = producer.submit(batch, f"chaos-producer-{index}")
        outcomes.setdefault(batch.batch_id, []).append(status)
        if handle is not None:
            handles[batch.batch_id] = (batch, handle)
        if batch.send_twice:
            resend.append(batch)
        if resend and rng.random() < 0.3:
            again = resend.pop(0)
            outcomes[again.batch_id].append(producer.send_blind(again))
        time.sleep(rng.uniform(0, 0.05))
    for again in resend:
        outcomes[again.batch_id].append(producer.send_blind(again))
    Path(out_path).write_text(json.dumps(outcomes))  # written early too: the runner may stop us
    producer.follow(handles, outcomes)
    Path(out_path).write_text(json.dumps(outcomes))


if __name__ == "__main__":
    main(*sys.argv[1:4])
