"""worker.metrics (recording in Redis) and worker.metrics_export (the collector), against a real redis-server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from catalog_core import metric_keys
from catalog_core.settings import Settings, load_settings
from schemas import BatchResult, BatchStatus, SupersededField
from worker import metrics
from worker.catalog_file import serialize_catalog
from worker.metrics_export import CatalogCollector
from producers.api import Producer
from tests.helpers import product

NO_RETRY = Retry(NoBackoff(), 0)  # a dead Redis fails at once: redis-py would retry with backoff


def scrape(settings: Settings, client: redis.Redis | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, as {(sample name, sorted labels): value}, parsed from the text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogCollector(settings, client))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, metric: str, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


def test_batches_records_and_superseded_fields_are_counted_by_outcome(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    queue = settings.queue
    superseded = [SupersededField(index=0, product_id="A", field="category", by_sequence=9)]
    metrics.record_batch(client, queue, BatchResult(batch_id="b1", status=BatchStatus.APPLIED, created=2, updated=1,
                                                    unchanged=3, superseded=superseded))
    metrics.record_batch(client, queue, BatchResult(batch_id="b2", status=BatchStatus.UNCHANGED, unchanged=4))
    metrics.record_batch(client, queue, BatchResult(batch_id="b3", status=BatchStatus.REJECTED))
    metrics.record_batch(client, queue, BatchResult(batch_id="b1", status=BatchStatus.DUPLICATE, created=2))
    metrics.record_failure(client, queue, "b4")
    metric_keys.record_lost(client, queue, "b5", 60)
    metric_keys.record_lost(client, queue, "b5", 60)  # asked about twice: lost once

    samples = scrape(settings)
    # Expected values counted by hand from the calls above.
    expected = {"applied": 1, "unchanged": 1, "rejected": 1, "duplicate": 1, "failed": 1, "lost": 1}
    for outcome, count in expected.items():
        assert value(samples, "catalog_batches_total", queue=queue, outcome=outcome) == count, outcome
    assert value(samples, "catalog_records_total", queue=queue, change="created") == 2  # not the duplicate's
    assert value(samples, "catalog_records_total", queue=queue, change="updated") == 1
    assert value(samples, "catalog_records_total", queue=queue, change="unchanged") == 7
    assert value(samples, "catalog_superseded_fields_total", queue=queue) == 1
    assert value(samples, "celery_task_succeeded_total", name="catalog.ingest_batch", queue_name=queue) == 4
    assert value(samples, "celery_task_failed_total", name="catalog.ingest_batch", queue_name=queue) == 1
    assert value(samples, "catalog_redis_up") == 1


def test_a_batch_its_producer_finds_lost_is_counted_once_however_often_it_is_asked(settings: Settings) -> None:
    handle = Producer(settings).submit([product("L-1")], batch_id="lost-1")
    client = redis.Redis.from_url(settings.redis_url)
    client.flushall()  # Redis restarted without persistence: the queue, the result and the trace are gone
    assert handle.state().state == "lost"
    assert handle.state().state == "lost"  # a producer waiting on it asks again and again
    assert value(scrape(settings), "catalog_batches_total", queue=settings.queue, outcome="lost") == 1
    # Counted once while its results would have lived, not forever: the marker expires with them.
    ttl = client.ttl(metric_keys.lost_marker_key(settings.queue, "lost-1"))
    assert 0 < ttl <= settings.result_expires


def test_a_batch_submitted_again_after_a_failed_submission_shows_lost_when_redis_loses_it(settings: Settings) -> None:
    """A submission that queued its batch but lost Redis's reply to its record raises ("submitting
    it again with the same batch id is safe"); the retry finds the record and does not send the
    batch again. When Redis then loses its data, that handle must say ``lost`` (the cue to submit
    again), not ``unknown``: a chaos producer waited on ``unknown`` until it was killed."""
    Producer(settings).submit([product("R-1")], batch_id="retried-1")  # the record written, the reply lost
    retry = Producer(settings).submit([product("R-1")], batch_id="retried-1")
    assert retry.resubmitted_digest is not None and not retry.submitted  # found, not sent again
    redis.Redis.from_url(settings.redis_url).flushall()  # restarted without persistence
    assert retry.state().state == "lost"
    again = Producer(settings).submit([product("R-1")], batch_id="retried-1")
    assert again.submitted  # sent this time: the loss cleared its record
    assert value(scrape(settings), "catalog_batches_total", queue=settings.queue, outcome="lost") == 1


def test_a_retry_whose_message_redis_lost_shows_lost_not_retrying_forever(settings: Settings) -> None:
    """A retry's message goes out before its RETRY state is stored; Redis restarted empty in between
    keeps the state and loses the message and the submission record. Seen in a CI chaos run: the
    producer waited on ``retrying`` until it was killed."""
    producer = Producer(settings)
    handle = producer.submit([product("T-1")], batch_id="retry-lost-1")
    redis.Redis.from_url(settings.redis_url).flushall()  # the message and the submission record gone
    producer.results_app.backend.mark_as_retry("retry-lost-1", RuntimeError("a product not created yet"))
    assert handle.state().state == "lost"
    # A retry whose submission record is still there is a live one.
    live = producer.submit([product("T-2")], batch_id="retry-live-1")
    producer.results_app.backend.mark_as_retry("retry-live-1", RuntimeError("a product not created yet"))
    assert live.state().state == "retrying"
    # A handle that did not queue the batch (catalog status) cannot tell: it says what Redis says.
    assert producer.handle("retry-lost-1").state().state == "retrying"


def test_a_batch_still_queued_is_not_counted_lost(settings: Settings) -> None:
    handle = Producer(settings).submit([product("Q-1")], batch_id="queued-1")
    assert handle.state().state == "queued"
    assert value(scrape(settings), "catalog_batches_total", queue=settings.queue, outcome="lost") == 0


def test_counting_a_lost_batch_with_redis_down_logs_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.5, retry=NO_RETRY)
    metric_keys.record_lost(dead, "q", "b1", 60)
    assert "could not count batch b1 as lost" in caplog.text


def test_commit_histograms_are_cumulative_at_export(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    queue = settings.queue
    metrics.record_commit(client, queue, batches=1, commit_seconds=0.04, lock_wait_seconds=0.0, committed_at=1000.0)
    metrics.record_commit(client, queue, batches=3, commit_seconds=0.3, lock_wait_seconds=2.0, committed_at=2000.0)
    metrics.record_commit(client, queue, batches=1, commit_seconds=99.0, lock_wait_seconds=0.05, committed_at=1500.0)

    samples = scrape(settings)
    bucket = "catalog_commit_duration_seconds_bucket"
    assert value(samples, bucket, queue=queue, le="0.025") == 0
    assert value(samples, bucket, queue=queue, le="0.05") == 1
    assert value(samples, bucket, queue=queue, le="0.5") == 2
    assert value(samples, bucket, queue=queue, le="30.0") == 2
    assert value(samples, bucket, queue=queue, le="+Inf") == 3
    assert value(samples, "catalog_commit_duration_seconds_count", queue=queue) == 3
    assert value(samples, "catalog_commit_duration_seconds_sum", queue=queue) == pytest.approx(99.34)
    assert value(samples, "catalog_lock_wait_seconds_bucket", queue=queue, le="0.001") == 1
    assert value(samples, "catalog_lock_wait_seconds_bucket", queue=queue, le="2.5") == 3
    assert value(samples, "catalog_batches_per_commit_bucket", queue=queue, le="1.0") == 2
    assert value(samples, "catalog_batches_per_commit_bucket", queue=queue, le="5.0") == 3
    assert value(samples, "catalog_last_commit_timestamp_seconds") == 1500.0  # the last recorded, as recorded


def test_a_commit_counts_all_its_batches_outcomes_in_a_few_commands_whatever_their_number(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    queue = settings.queue
    superseded = [SupersededField(index=0, product_id="A", field="category", by_sequence=9)]
    results = [BatchResult(batch_id=f"a{n}", status=BatchStatus.APPLIED, updated=1, created=n % 2,
                           superseded=superseded if n % 5 == 0 else []) for n in range(30)]
    results += [BatchResult(batch_id=f"u{n}", status=BatchStatus.UNCHANGED, unchanged=2) for n in range(6)]
    results += [BatchResult(batch_id=f"r{n}", status=BatchStatus.REJECTED) for n in range(4)]
    client.config_resetstat()
    metrics.record_commit(client, queue, len(results), 0.05, 0.001, 1000.0, results)

    # One HINCRBY per counter that moved (3 outcomes, 3 record changes, superseded fields), plus a
    # bucket and a count for each of the 3 histograms: not one or more per batch (103 here).
    assert client.info("commandstats")["cmdstat_hincrby"]["calls"] == 7 + 3 * 2
    samples = scrape(settings)
    # Counted by hand: 30 applied (15 of them created one product, every one updated one,
    # every fifth had one superseded field), 6 unchanged with 2 records each, 4 rejected.
    for outcome, count in {"applied": 30, "unchanged": 6, "rejected": 4}.items():
        assert value(samples, "catalog_batches_total", queue=queue, outcome=outcome) == count, outcome
    assert value(samples, "catalog_records_total", queue=queue, change="created") == 15
    assert value(samples, "catalog_records_total", queue=queue, change="updated") == 30
    assert value(samples, "catalog_records_total", queue=queue, change="unchanged") == 12
    assert value(samples, "catalog_superseded_fields_total", queue=queue) == 6


def test_a_recording_that_fails_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=NO_RETRY)
    metrics.record_batch(dead, "q", BatchResult(batch_id="b", status=BatchStatus.APPLIED))
    metrics.record_commit(dead, "q", 1, 0.1, 0.1, time.time())
    assert "could not record" in caplog.text


def test_with_redis_down_the_scrape_answers_with_redis_up_0_and_the_file_metrics(catalog_path: Path) -> None:
    catalog_path.parent.mkdir(parents=True)
    catalog_path.write_bytes(serialize_catalog([product("A"), product("B")]))
    settings = load_settings(path=catalog_path, redis_url="redis://127.0.0.1:1/0")
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5, retry=NO_RETRY)
    samples = scrape(settings, dead)
    assert value(samples, "catalog_redis_up") == 0
    assert value(samples, "catalog_products") == 2
    assert value(samples, "catalog_size_bytes") == catalog_path.stat().st_size
    assert value(samples, "catalog_last_commit_timestamp_seconds") == catalog_path.stat().st_mtime


def test_queue_unacked_lock_and_backups_are_read_at_each_scrape(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    client.rpush(settings.queue, "m1", "m2", "m3")
    now = time.time()
    client.zadd("unacked_index", {"tag-old": now - 120, "tag-new": now - 1})
    backups = settings.backup_path
    backups.mkdir(parents=True)
    (backups / "products_20250101_000000_000000.json").write_bytes(b"[]")
    (backups / "products_20250102_000000_000000.json").write_bytes(b"[ ]")
    metrics.record_rotation(client, settings.queue, now - 60)

    samples = scrape(settings)
    assert value(samples, "celery_queue_length", queue_name=settings.queue) == 3
    assert value(samples, "catalog_unacked_batches") == 2
    assert 119 <= value(samples, "catalog_oldest_unacked_age_seconds") < 200
    assert value(samples, "catalog_backups") == 2
    assert value(samples, "catalog_backups_size_bytes") == 5
    assert value(samples, "catalog_backup_oldest_age_seconds") > value(samples, "catalog_backup_newest_age_seconds")
    assert value(samples, "catalog_last_rotation_timestamp_seconds") == pytest.approx(now - 60)
    assert value(samples, "catalog_lock_held") == 0


def test_an_unreadable_catalog_id_or_catalog_never_fails_the_scrape(settings: Settings) -> None:
    settings.catalog_path.parent.mkdir(parents=True)
    settings.catalog_path.write_bytes(b"[{broken")
    settings.catalog_path.with_name("products.json.id").write_text("not an id\n")
    samples = scrape(settings)
    assert value(samples, "catalog_redis_up") == 1
    assert value(samples, "catalog_files_readable") == 0
    assert ("catalog_lock_held", ()) not in samples
