"""What workers record for the metrics exporter: counters and histogram buckets in Redis hashes.

Workers run on many hosts and in prefork children, so nothing is kept in process memory: each
call sends one pipeline (no MULTI: nothing here needs atomicity, and a pipeline is one round
trip) of ``HINCRBY``/``HINCRBYFLOAT``/``HSET`` on a few hashes under ``<queue>:metrics:*``.
``catalog metrics`` (worker/metrics_export.py) reads them on each scrape.

Histogram buckets are stored *non-cumulative* (one field per bucket, the value counted in the
first bucket whose bound is >= the value, Prometheus' ``le`` rule): one HINCRBY per observation.
The exporter sums them into cumulative buckets.

Recording never fails a batch: a Redis error is logged and swallowed. Counters are best effort
(a retry of a delivery that recorded and then failed to ack is counted again); the catalog's
state file stays the truth for exactly-once effects.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from catalog_core.metric_keys import counters_key, histogram_key, times_key
from schemas import BatchResult, BatchStatus

log = logging.getLogger(__name__)

# "lost" is counted by producers, which alone can tell (catalog_core/metric_keys.py).
OUTCOMES = ("applied", "unchanged", "rejected", "duplicate", "failed", "lost")
RECORD_CHANGES = ("created", "updated", "unchanged")

# Seconds: a commit of a 13 MB catalog takes ~0.1-1 s; the lock wait can reach CATALOG_LOCK_TIMEOUT (60 s).
COMMIT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOCK_WAIT_BUCKETS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCHES_PER_COMMIT_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100)

HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "commit_seconds": COMMIT_BUCKETS,
    "lock_wait_seconds": LOCK_WAIT_BUCKETS,
    "batches_per_commit": BATCHES_PER_COMMIT_BUCKETS,
}
SUM_FIELD = "sum"
COUNT_FIELD = "count"
INF_FIELD = "+Inf"


def bucket_field(bound: float) -> str:
    """The field name of a bucket: its bound as Prometheus prints ``le`` ("0.5", "1.0", "+Inf")."""
    return INF_FIELD if math.isinf(bound) else repr(float(bound))


def bucket_for(value: float, bounds: Sequence[float]) -> str:
    """The field of the first bucket whose bound is >= ``value`` (``le``), else ``+Inf``."""
    for bound in bounds:
        if value <= bound:
            return bucket_field(bound)
    return INF_FIELD


def _observe(pipe: redis.client.Pipeline, queue: str, name: str, value: float) -> None:
    key = histogram_key(queue, name)
    pipe.hincrby(key, bucket_for(value, HISTOGRAMS[name]), 1)
    pipe.hincrbyfloat(key, SUM_FIELD, value)
    pipe.hincrby(key, COUNT_FIELD, 1)


def _send(client: redis.Redis, what: str, fill: Callable[[Any], Any]) -> None:
    """Run one pipeline built by ``fill(pipe)``; an error is logged, never raised."""
    try:
        with client.pipeline(transaction=False) as pipe:
            fill(pipe)
            pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("metrics: could not record %s (%s); the batch is not affected", what, exc)


def _outcome_counts(results: Iterable[BatchResult]) -> Counter[str]:
    """The counter fields ``results`` add to, summed: a commit of many batches is a few HINCRBY, not
    a few per batch."""
    counts: Counter[str] = Counter()
    for result in results:
        counts[f"batches:{result.status.value}"] += 1
        if result.status in (BatchStatus.APPLIED, BatchStatus.UNCHANGED):
            for change in RECORD_CHANGES:
                counts[f"records:{change}"] += getattr(result, change)
            counts["superseded_fields"] += len(result.superseded)
    return counts


def _count_outcomes(pipe: redis.client.Pipeline, queue: str, results: Iterable[BatchResult]) -> None:
    key = counters_key(queue)
    for name, count in _outcome_counts(results).items():
        if count:
            pipe.hincrby(key, name, count)


def record_batch(client: redis.Redis, queue: str, result: BatchResult) -> None:
    """Count one batch's final outcome; for applied and unchanged batches also its records and superseded fields.

    A duplicate counts as a duplicate only: its records were counted when it was first applied.
    """
    _send(client, f"the outcome of batch {result.batch_id}", lambda pipe: _count_outcomes(pipe, queue, [result]))


def record_failure(client: redis.Redis, queue: str, batch_id: str) -> None:
    """Count a batch that failed for good (every retry spent)."""
    _send(client, f"the failure of batch {batch_id}",
          lambda pipe: pipe.hincrby(counters_key(queue), "batches:failed", 1))


def record_commit(client: redis.Redis, queue: str, batches: int, commit_seconds: float,
                  lock_wait_seconds: float, committed_at: float, results: Sequence[BatchResult] = ()) -> None:
    """Observe one commit: its duration, the wait for the lock before it, how many batches it
    carried (group commit), and its time (Unix seconds) as the last commit; and count the
    outcomes of the batches it decided (``record_batch``), in the same round trip."""

    def fill(pipe: redis.client.Pipeline) -> None:
        _observe(pipe, queue, "commit_seconds", commit_seconds)
        _observe(pipe, queue, "lock_wait_seconds", lock_wait_seconds)
        _observe(pipe, queue, "batches_per_commit", float(batches))
        pipe.hset(times_key(queue), "last_commit", repr(float(committed_at)))
        _count_outcomes(pipe, queue, results)

    _send(client, "a commit", fill)


def record_rotation(client: redis.Redis, queue: str, rotated_at: float) -> None:
    """Remember when beat's backup rotation last ran (Unix seconds)."""
    _send(client, "the rotation time",
          lambda pipe: pipe.hset(times_key(queue), "last_rotation", repr(float(rotated_at))))


def record_beat_start(client: redis.Redis, queue: str, started_at: float) -> None:
    """Remember when beat started: until its first rotation, the rotation check counts from here."""
    _send(client, "beat's start", lambda pipe: pipe.hset(times_key(queue), "beat_started", repr(float(started_at))))
