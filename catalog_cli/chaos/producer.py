"""One chaos producer process: submits its share of the plan, retrying through Redis outages.

Run by the chaos runner as ``python -m catalog_cli.chaos.producer PLAN INDEX OUT``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from catalog_core.errors import BatchRefusedError, RedisUnavailableError
from catalog_core.settings import load_settings
from catalog_cli.chaos.plan import ChaosPlan
from producers.api import Producer

RETRY_FOR_S = 120.0


def submit_with_retry(producer: Producer, batch_id: str, items: list[dict], source: str) -> str:
    """Submit; through a Redis outage, keep retrying with the same batch id (safe: duplicates are caught)."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            producer.submit(items, batch_id=batch_id, source=source)
            return "queued"
        except BatchRefusedError:
            return "refused"
        except RedisUnavailableError:
            if time.monotonic() > deadline:
                return "gave up"
            producer = Producer(producer.settings)  # fresh connections after the outage
            time.sleep(0.5)


def main(plan_path: str, index: str, out_path: str) -> None:
    plan = ChaosPlan.from_dict(json.loads(Path(plan_path).read_text()))
    rng = random.Random(plan.seed * 1000 + int(index))
    producer = Producer(load_settings())
    outcomes: dict[str, list[str]] = {}
    resend = []
    for batch in plan.for_producer(int(index)):
        outcomes.setdefault(batch.batch_id, []).append(
            submit_with_retry(producer, batch.batch_id, batch.items, f"chaos-producer-{index}"))
        if batch.send_twice:
            resend.append(batch)
        if resend and rng.random() < 0.3:
            again = resend.pop(0)
            outcomes[again.batch_id].append(submit_with_retry(producer, again.batch_id, again.items, "resend"))
        time.sleep(rng.uniform(0, 0.05))
    for again in resend:
        outcomes[again.batch_id].append(submit_with_retry(producer, again.batch_id, again.items, "resend"))
    Path(out_path).write_text(json.dumps(outcomes))


if __name__ == "__main__":
    main(*sys.argv[1:4])
