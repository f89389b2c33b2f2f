"""The Prometheus collector of `catalog metrics`: reads Redis, the state file and the catalog's stat on each scrape.

Nothing is kept between scrapes but the product count, re-parsed only when the catalog's stat
changes. Redis down: the collector still answers, with ``catalog_redis_up 0`` and the metrics
that come from files. Names follow celery-exporter (github.com/danihodovic/celery-exporter)
where they overlap, so its dashboards keep working (labels ``name`` and ``queue_name``; no
``hostname``: the counters are kept per queue, not per worker):

- ``celery_task_succeeded_total``: ingest tasks that returned an outcome (applied, unchanged,
  rejected or duplicate: Celery's task-succeeded event fires for all four);
- ``celery_task_failed_total``: ingest tasks that failed for good (every retry spent);
- ``celery_queue_length``: batches waiting in the queue.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import redis
from kombu.transport.redis import Channel as KombuChannel
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from catalog_core.celery_config import TASK_INGEST
from catalog_core.errors import CatalogError
from catalog_core.metric_keys import counters_key, histogram_key, times_key
from catalog_core.settings import Settings
from worker import metrics
from worker.backups import backup_usage
from worker.catalog_file import read_catalog
from worker.lock import existing_lock_name
from worker.lock_info import read_lock
from worker.state import read_state, state_path

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 2.0  # a scrape must answer even when Redis hangs


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class CatalogCollector(Collector):
    """Every catalog-ingest metric, read fresh at each scrape."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.client = client or redis.Redis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                                                     socket_connect_timeout=REDIS_TIMEOUT)
        self._products_cache: tuple[tuple[int, int, int], int] | None = None
        self._last_commit: Any = None  # Redis's record of the last commit time, per scrape

    # --- Redis ---------------------------------------------------------------------------
    def _redis_metrics(self) -> list[Metric]:
        queue = self.settings.queue
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(counters_key(queue))
            for name in metrics.HISTOGRAMS:
                pipe.hgetall(histogram_key(queue, name))
            pipe.hgetall(times_key(queue))
            pipe.llen(queue)
            pipe.zcard(KombuChannel.unacked_index_key)
            pipe.zrange(KombuChannel.unacked_index_key, 0, 0, withscores=True)
            pipe.zcard(f"{queue}:rejected")
            replies = pipe.execute()
        counters = {k.decode(): int(v) for k, v in replies[0].items()}
        histograms = dict(zip(metrics.HISTOGRAMS, replies[1:1 + len(metrics.HISTOGRAMS)], strict=True))
        times, depth, unacked, oldest, rejected = replies[1 + len(metrics.HISTOGRAMS):]
        self._last_commit = times.get(b"last_commit")
        found: list[Metric] = []

        batches = CounterMetricFamily("catalog_batches", "Batches by final outcome.", labels=["queue", "outcome"])
        for outcome in metrics.OUTCOMES:
            batches.add_metric([queue, outcome], counters.get(f"batches:{outcome}", 0))
        records = CounterMetricFamily("catalog_records", "Records of applied and unchanged batches, by what they did.",
                                      labels=["queue", "change"])
        for change in metrics.RECORD_CHANGES:
            records.add_metric([queue, change], counters.get(f"records:{change}", 0))
        superseded = CounterMetricFamily("catalog_superseded_fields", "Fields not written because a batch with a "
                                         "higher sequence had written them.", labels=["queue"])
        superseded.add_metric([queue], counters.get("superseded_fields", 0))
        found += [batches, records, superseded]

        task_labels = ["name", "queue_name"]
        succeeded = CounterMetricFamily("celery_task_succeeded", "Ingest tasks that returned an outcome "
                                        "(celery-exporter's name).", labels=task_labels)
        succeeded.add_metric([TASK_INGEST, queue], sum(counters.get(f"batches:{o}", 0) for o in
                                                       ("applied", "unchanged", "rejected", "duplicate")))
        failed = CounterMetricFamily("celery_task_failed", "Ingest tasks that failed for good (celery-exporter's name).",
                                     labels=task_labels)
        failed.add_metric([TASK_INGEST, queue], counters.get("batches:failed", 0))
        found += [succeeded, failed]

        for name, doc in (("commit_seconds", "catalog_commit_duration_seconds"),
                          ("lock_wait_seconds", "catalog_lock_wait_seconds"),
                          ("batches_per_commit", "catalog_batches_per_commit")):
            found.append(self._histogram(doc, name, histograms[name]))

        found.append(_gauge("celery_queue_length", "Batches waiting in the queue (celery-exporter's name).",
                            depth, {"queue_name": queue}))
        found.append(_gauge("catalog_unacked_batches", "Batches delivered to a worker and not yet acknowledged "
                            "(kombu's unacked index: all queues of this Redis db).", unacked))
        age = max(0.0, time.time() - float(oldest[0][1])) if oldest else 0.0
        found.append(_gauge("catalog_oldest_unacked_age_seconds", "Age of the oldest unacknowledged delivery; "
                            "0 when none.", age))
        found.append(_gauge("catalog_rejected_batches", "Rejected batches remembered for `catalog rejected` "
                            "(at most CATALOG_REJECTED_KEEP).", rejected, {"queue": queue}))
        rotation = times.get(b"last_rotation")
        if rotation is not None:
            found.append(_gauge("catalog_last_rotation_timestamp_seconds", "When beat's backup rotation last ran.",
                                float(rotation)))
        try:
            found += self._lock_metrics()
        except CatalogError as exc:  # an unreadable catalog id: no lock name to look at
            log.warning("metrics: %s", exc)
        return found

    def _histogram(self, metric: str, name: str, raw: dict[bytes, bytes]) -> HistogramMetricFamily:
        fields = {k.decode(): v for k, v in raw.items()}
        cumulative, buckets = 0, []
        for bound in (*metrics.HISTOGRAMS[name], float("inf")):
            field = metrics.bucket_field(bound)
            cumulative += int(fields.get(field, 0))
            buckets.append((field, cumulative))
        family = HistogramMetricFamily(metric, f"Histogram of {name.replace('_', ' ')}.", labels=["queue"])
        family.add_metric([self.settings.queue], buckets, sum_value=float(fields.get(metrics.SUM_FIELD, 0)))
        return family

    def _lock_metrics(self) -> list[Metric]:
        view = read_lock(self.client, existing_lock_name(self.settings.catalog_path))
        found: list[Metric] = [
            _gauge("catalog_lock_held", "1 while a writer holds the catalog lock.", int(view.held)),
            _gauge("catalog_lock_expire_seconds", "CATALOG_LOCK_EXPIRE.", self.settings.lock_expire)]
        # -1: held without an expiry (stuck until deleted); 0: free.
        ttl = (-1.0 if view.ttl is None else view.ttl) if view.held else 0.0
        found.append(_gauge("catalog_lock_ttl_seconds", "Seconds left on the lock; -1 without expiry, 0 free.", ttl))
        found.append(_gauge("catalog_lock_held_seconds", "How long the current holder has held the lock "
                            "(0 free or unknown holder).", view.held_for or 0.0))
        return found

    # --- files ---------------------------------------------------------------------------
    def _products(self, identity: tuple[int, int, int]) -> int:
        if self._products_cache is None or self._products_cache[0] != identity:
            self._products_cache = (identity, len(read_catalog(self.settings.catalog_path)))
        return self._products_cache[1]

    def _file_metrics(self) -> list[Metric]:
        path = self.settings.catalog_path
        found: list[Metric] = []
        try:
            status = os.stat(path)
        except OSError as exc:  # absent, or a folder we may not enter
            status = None
            if not isinstance(exc, FileNotFoundError):
                log.warning("metrics: cannot stat %s (%s)", path, exc.strerror)
        readable = 1
        if status is not None:
            found.append(_gauge("catalog_size_bytes", "Size of products.json.", status.st_size))
            try:
                found.append(_gauge("catalog_products", "Products in the catalog.",
                                    self._products((status.st_ino, status.st_mtime_ns, status.st_size))))
            except CatalogError as exc:
                readable = 0
                log.warning("metrics: %s", exc)
        last_commit = float(self._last_commit) if self._last_commit else (status.st_mtime if status else None)
        if last_commit is not None:
            found.append(_gauge("catalog_last_commit_timestamp_seconds", "When the last commit happened "
                                "(the catalog's mtime until a worker records one).", last_commit))
        try:
            state = read_state(state_path(path))
        except CatalogError as exc:
            state, readable = None, 0
            log.warning("metrics: %s", exc)
        found.append(_gauge("catalog_files_readable", "0 when the catalog or its state file cannot be read.", readable))
        if state is not None:
            commits = CounterMetricFamily("catalog_commits", "Commits recorded in the state file.")
            commits.add_metric([], state.commits)
            duplicates = CounterMetricFamily("catalog_state_duplicates", "Duplicates recorded in the state file.")
            duplicates.add_metric([], state.duplicates)
            found += [commits, duplicates, _gauge("catalog_fence", "Fencing token of the last commit.", state.fence)]
        found += self._backup_metrics()
        return found

    def _backup_metrics(self) -> list[Metric]:
        try:
            usage = backup_usage(self.settings)
        except CatalogError as exc:
            log.warning("metrics: %s", exc)
            return []
        found: list[Metric] = [
            _gauge("catalog_backups", "Backups of the catalog.", usage.count),
            _gauge("catalog_backups_compressed", "Backups stored gzipped.", usage.compressed_count),
            _gauge("catalog_backups_size_bytes", "Bytes of all backups.", usage.total_bytes),
            _gauge("catalog_backups_cap_bytes", "CATALOG_BACKUP_MAX_BYTES (0: no cap).", usage.cap_bytes),
            _gauge("catalog_backups_near_cap", "1 when the backups passed CATALOG_BACKUP_WARN_RATIO of their cap.",
                   int(usage.near_cap)),
        ]
        if usage.oldest_age is not None and usage.newest_age is not None:
            found.append(_gauge("catalog_backup_oldest_age_seconds", "Age of the oldest backup.",
                                usage.oldest_age.total_seconds()))
            found.append(_gauge("catalog_backup_newest_age_seconds", "Age of the newest backup.",
                                usage.newest_age.total_seconds()))
        return found

    def collect(self) -> Iterator[Metric]:
        self._last_commit = None
        try:
            from_redis = self._redis_metrics()
            up = 1
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics: Redis failed during the scrape (%s)", type(exc).__name__)
            from_redis, up = [], 0
        yield _gauge("catalog_redis_up", "1 when Redis answered this scrape.", up)
        yield from from_redis
        yield from self._file_metrics()
