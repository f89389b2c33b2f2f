"""producers.api: checking, queueing and following batches (real Redis, no worker running)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import redis

from catalog_core.errors import BatchRefusedError, BatchTooLargeError, RedisUnavailableError, WaitTimeoutError
from catalog_core.settings import Settings, load_settings
from producers.api import Producer, chunked
from tests.helpers import product, write_jsonl


def queued_messages(settings: Settings) -> list[dict]:
    raw = redis.Redis.from_url(settings.redis_url).lrange(settings.queue, 0, -1)[::-1]  # LPUSHed: oldest last
    return [json.loads(base64.b64decode(json.loads(item)["body"])) for item in raw]


def test_a_batch_is_queued_as_json_under_its_batch_id(settings: Settings) -> None:
    handle = Producer(settings).submit([product("A")], batch_id="feed-1", source="tests")
    assert handle.batch_id == "feed-1"
    [(args, _kwargs, _embed)] = queued_messages(settings)
    assert args[0]["batch_id"] == "feed-1" and args[0]["source"] == "tests" and args[0]["schema_version"] == 2 and args[0]["sequence"] >= 1
    assert args[0]["items"][0]["product_id"] == "A"


def test_batch_ids_are_generated_unique_when_not_given(settings: Settings) -> None:
    producer = Producer(settings)
    ids = {producer.submit([product("A")]).batch_id for _ in range(5)}
    assert len(ids) == 5


def test_records_that_can_never_be_valid_are_refused_before_the_queue(settings: Settings) -> None:
    bad = [product("A"), {"product_id": "B", "pricing": [{"tier_name": "x", "price_aed": -1}]}, {"product_id": "C", "prcing": []}]
    with pytest.raises(BatchRefusedError) as info:
        Producer(settings).submit(bad)
    assert {(e.index, e.loc) for e in info.value.errors} == {(1, "pricing[0].price_aed"), (2, "prcing")}
    assert queued_messages(settings) == []


def test_a_patch_without_other_fields_passes_the_producer_check(settings: Settings) -> None:
    Producer(settings).submit([{"product_id": "EXISTING", "category": "Cruise"}])
    assert len(queued_messages(settings)) == 1


def test_batches_over_the_limits_are_refused_at_the_producer(catalog_path: Path, redis_url: str) -> None:
    few = Producer(load_settings(path=catalog_path, redis_url=redis_url, max_batch_items=2))
    with pytest.raises(BatchTooLargeError, match="--chunk-size"):
        few.submit([product(str(i)) for i in range(3)])
    small = Producer(load_settings(path=catalog_path, redis_url=redis_url, max_batch_bytes=2048))
    with pytest.raises(BatchTooLargeError, match="CATALOG_MAX_BATCH_BYTES"):
        small.submit([product(str(i), description_long="x" * 500) for i in range(5)])


def test_a_file_can_be_split_into_chunks_each_its_own_batch(settings: Settings, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "feed.jsonl", [product(str(i)) for i in range(5)])
    handles = Producer(settings).submit_file(path, chunk_size=2, batch_id="feed")
    assert [h.batch_id for h in handles] == ["feed.0001", "feed.0002", "feed.0003"]
    assert [len(m[0][0]["items"]) for m in queued_messages(settings)] == [2, 2, 1]


def test_chunking_keeps_order_and_covers_every_record() -> None:
    assert chunked(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert chunked(list(range(3)), None) == [[0, 1, 2]]


def test_a_queued_batch_reports_queued_and_waiting_times_out(settings: Settings) -> None:
    handle = Producer(settings).submit([product("A")])
    assert handle.state().state == "queued"
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match="catalog status"):
        handle.wait(timeout=0.5)
    assert time.monotonic() - started < 5


def test_an_unreachable_broker_is_a_clear_error_and_fails_fast(catalog_path: Path) -> None:
    producer = Producer(load_settings(path=catalog_path, redis_url="redis://127.0.0.1:1/0"))
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match="cannot reach"):
        producer.submit([product("A")])
    assert time.monotonic() - started < 30


def test_a_publish_refused_by_a_redis_that_answered_the_ping_is_a_clear_error_and_gives_up_the_sequence(
    settings: Settings,
) -> None:
    """PING and the sequence succeed; only the publish fails (the queue key holds a string)."""
    from catalog_core.sequence import abandoned_sequences

    client = redis.Redis.from_url(settings.redis_url)
    client.set(settings.queue, b"not a list")
    with pytest.raises(RedisUnavailableError, match="cannot reach the broker") as info:
        Producer(settings).submit([product("A")], batch_id="refused")
    assert "WRONGTYPE" in str(info.value)
    taken = int(client.get(f"{settings.queue}:sequence") or 0)
    assert abandoned_sequences(client, settings.queue) == [taken]
    assert client.get(settings.queue) == b"not a list"


def test_producers_never_import_the_worker() -> None:
    import subprocess
    import sys

    code = "import producers.api, producers.files, schemas, sys; print(any(m.split('.')[0] == 'worker' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_submission_whose_send_failed_leaves_no_record_so_a_retry_sends_it(settings: Settings) -> None:
    """A record written before a send that then failed would make the retry answer "duplicate"
    for a batch that never reached the queue (found by restarting Redis under load)."""
    from producers.tracking import find_submission

    client = redis.Redis.from_url(settings.redis_url)
    client.set(settings.queue, b"not a list")  # the send fails, after the sequence was taken
    with pytest.raises(RedisUnavailableError):
        Producer(settings).submit([product("A")], batch_id="retry-me")
    assert find_submission(client, settings.queue, "retry-me") is None
    client.delete(settings.queue)
    handle = Producer(settings).submit([product("A")], batch_id="retry-me")
    assert handle.submitted and handle.resubmitted_digest is None  # really sent this time
    assert client.llen(settings.queue) == 1


def test_a_batch_a_worker_runs_is_running_even_without_a_submission_record(settings: Settings) -> None:
    # Another language's producer (or a message pushed by hand) keeps no submission record.
    client = redis.Redis.from_url(settings.redis_url)
    client.set("celery-task-meta-from-node", json.dumps({"status": "STARTED", "result": {"pid": 1},
                                                          "task_id": "from-node", "traceback": None}))
    state = Producer(settings).handle("from-node").state()
    assert state.state == "running" and not state.final
