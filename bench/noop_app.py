"""The raw Celery rate's app: the workers' own app, built by ``worker.app.create_app`` with the same
configuration (``catalog_core.celery_config`` plus ``worker_config``: transport, consumer, acks,
prefetch, queue), plus one task that does nothing. Workers load it with the project's worker
command and ``-A bench.noop_app`` (bench/workers.py), so only the task's work differs.
"""

from __future__ import annotations

from typing import Any

from worker.app import create_app

NOOP_TASK = "catalog.bench_noop"

app = create_app(exit_on_bad_settings=True)


@app.task(name=NOOP_TASK)
def noop(payload: Any) -> None:
    """Carries a batch's message (the same bytes to move through Redis) and does nothing with it."""
    del payload
