"""Batches through the queue and real workers: latency of one batch (G1) and the rate of a burst (G2),
for this project (``producers.api.Producer.submit``, the ingest task) and for raw Celery (a no-op
task carrying the same message, sent with the producers' own Celery configuration).

A burst is queued while the workers are paused (SIGSTOP), then the workers are resumed: its rate
is the number of batches over the time from the resume to the last result, the rate at which the
workers drain a queue, not the rate at which this one process can send (the raw Celery workers
drain faster than one sender on 2 shared cores queues). A result's time is the ``date_done`` its
worker stored (same machine, same clock), else the moment polling saw it: results are polled in
submission order, the same way for both (one read of the Celery result per poll), so polling costs
about one Redis read per batch and steals the same little CPU from both.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from celery import Celery
from celery.states import READY_STATES

from bench.noop_app import NOOP_TASK
from bench.workers import BenchError, RunningWorkers
from producers.api import BatchHandle, Producer, client_app

POLL_S = 0.01


@dataclass(frozen=True)
class Burst:
    kind: str  # "project" or "celery" (the raw rate)
    workers: int
    records: int
    batches: int
    queue_s: float  # queuing the burst, workers paused
    elapsed_s: float  # from the workers' resume to the last result
    statuses: dict[str, int]

    @property
    def rate(self) -> float:
        return self.batches / self.elapsed_s

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "batches_per_s": round(self.rate, 2)}


def completion_time(results: Celery, task_id: str, seen_at: float) -> float:
    """Wall-clock time the worker stored the result (``date_done``), at most when polling saw it."""
    done = results.AsyncResult(task_id).date_done
    if isinstance(done, str):
        done = dt.datetime.fromisoformat(done)
    if isinstance(done, dt.datetime):
        if done.tzinfo is None:
            done = done.replace(tzinfo=dt.UTC)
        return min(done.timestamp(), seen_at)
    return seen_at


def wait_in_order(ids: Sequence[str], outcome: Callable[[str], str | None], deadline: float,
                  what: str) -> dict[str, tuple[str, float]]:
    """``{id: (status, seen_at)}`` once every id has an outcome; ``BenchError`` past ``deadline``."""
    seen: dict[str, tuple[str, float]] = {}
    for task_id in ids:
        while True:
            status = outcome(task_id)
            if status is not None:
                seen[task_id] = (status, time.time())
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: only {len(seen)} of {len(ids)} batches had a result in time "
                                 "(raise --timeout, or read the worker logs with --keep)")
            time.sleep(POLL_S)
    return seen


def project_outcome(handles: dict[str, BatchHandle]) -> Callable[[str], str | None]:
    def outcome(batch_id: str) -> str | None:
        state = handles[batch_id].state()
        if not state.final:
            return None
        return state.result.status.value if state.result is not None else state.state
    return outcome


def raw_outcome(results: Celery) -> Callable[[str], str | None]:
    def outcome(task_id: str) -> str | None:
        state = results.AsyncResult(task_id).state
        return state.lower() if state in READY_STATES else None
    return outcome


def project_burst(producer: Producer, batches: list[list[dict[str, Any]]], workers: RunningWorkers, tag: str,
                  timeout: float) -> Burst:
    handles = {}
    with workers.paused():
        queued = time.time()
        for number, batch in enumerate(batches):
            handle = producer.submit(batch, batch_id=f"{tag}-{number:05d}", source="bench")
            handles[handle.batch_id] = handle
        resumed = time.time()
    # Watched while the workers drain as the raw burst is (one GET of the Celery result per poll):
    # the watcher's CPU, taken from the same 2 cores, costs both the same. Each batch's own
    # outcome (applied, duplicate, ...) is read once all are done.
    seen = wait_in_order(list(handles), raw_outcome(producer.results_app), time.monotonic() + timeout,
                         f"project burst {tag}")
    outcome = project_outcome(handles)
    seen = {batch_id: (outcome(batch_id) or status, seen_at) for batch_id, (status, seen_at) in seen.items()}
    return summarize("project", workers, batches, producer.results_app, seen, queued, resumed)


def raw_burst(producer: Producer, batches: list[list[dict[str, Any]]], workers: RunningWorkers, tag: str,
              timeout: float) -> Burst:
    """The same messages' records sent to the no-op task, by an app with the producers' configuration."""
    sender = client_app(producer.settings, results=False)
    ids = []
    try:
        with workers.paused():
            queued = time.time()
            for number, batch in enumerate(batches):
                task_id = f"{tag}-{number:05d}"
                sender.send_task(NOOP_TASK, args=[{"batch_id": task_id, "source": "bench", "items": batch}],
                                 task_id=task_id, queue=producer.settings.queue)
                ids.append(task_id)
            resumed = time.time()
    finally:
        sender.close()
    seen = wait_in_order(ids, raw_outcome(producer.results_app), time.monotonic() + timeout, f"raw burst {tag}")
    return summarize("celery", workers, batches, producer.results_app, seen, queued, resumed)


def summarize(kind: str, workers: RunningWorkers, batches: list[list[dict[str, Any]]], results: Celery,
              seen: dict[str, tuple[str, float]], queued: float, resumed: float) -> Burst:
    finished = max(completion_time(results, task_id, seen_at) for task_id, (_, seen_at) in seen.items())
    statuses = Counter(status for status, _ in seen.values())
    return Burst(kind, len(workers.children), len(batches[0]), len(batches), round(resumed - queued, 3),
                 round(max(finished - resumed, 1e-6), 3), dict(statuses))


SETTLE_S = 0.5


def idle_latency(producer: Producer, batches: list[list[dict[str, Any]]], tag: str, timeout: float,
                 floor: Callable[[], float]) -> tuple[list[float], list[float], dict[str, int]]:
    """Submit-to-result milliseconds of each batch but the first (a warm-up), one at a time, and a
    sample of the floor (``floor()``, milliseconds) before each: G1's reference, taken beside it."""
    latencies: list[float] = []
    floors: list[float] = []
    statuses: Counter[str] = Counter()
    for number, batch in enumerate(batches):
        if number:
            # After the previous batch's result its worker still publishes, counts and logs: the
            # floor is measured once that is over, alone, as it is for G4.
            time.sleep(SETTLE_S)
            floors.append(floor())
        started = time.time()
        handle = producer.submit(batch, batch_id=f"{tag}-{number:05d}", source="bench")
        seen = wait_in_order([handle.batch_id], project_outcome({handle.batch_id: handle}),
                             time.monotonic() + timeout, f"latency batch {tag}-{number}")
        status, seen_at = seen[handle.batch_id]
        if number:
            latencies.append((completion_time(producer.results_app, handle.batch_id, seen_at) - started) * 1000)
            statuses[status] += 1
    return latencies, floors, dict(statuses)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples), 1)
