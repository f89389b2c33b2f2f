"""catalog_core.rejections: rejected batches kept in Redis for `catalog rejected`."""

from __future__ import annotations

import datetime as dt

import redis

from catalog_core.rejections import RejectedBatch, find_rejection, list_rejections, record_rejection
from schemas import BatchResult, BatchStatus, RecordError


def rejected(batch_id: str, minute: int) -> RejectedBatch:
    result = BatchResult(batch_id=batch_id, status=BatchStatus.REJECTED,
                         errors=[RecordError(index=0, product_id="GHOST", loc="product_name", msg="field required")])
    return RejectedBatch(batch_id=batch_id, source="tests", submitted_at=None,
                         rejected_at=dt.datetime(2026, 11, 28, 12, minute, tzinfo=dt.UTC), result=result)


def test_rejections_are_listed_newest_first_with_their_errors(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for minute, batch_id in enumerate(["a", "b", "c"]):
        record_rejection(client, "q", rejected(batch_id, minute), keep=100)
    listed = list_rejections(client, "q")
    assert [r.batch_id for r in listed] == ["c", "b", "a"]
    assert listed[0].result.errors[0].product_id == "GHOST"


def test_only_the_newest_rejections_are_kept(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for minute in range(5):
        record_rejection(client, "q", rejected(f"b{minute}", minute), keep=2)
    assert [r.batch_id for r in list_rejections(client, "q")] == ["b4", "b3"]
    assert find_rejection(client, "q", "b0") is None


def test_each_queue_has_its_own_rejections(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    record_rejection(client, "one", rejected("x", 1), keep=10)
    assert list_rejections(client, "two") == []
    assert find_rejection(client, "one", "x") is not None
