"""The record of rejected batches, kept in Redis so that operators can list and inspect them."""

from __future__ import annotations

import datetime as dt
from typing import cast

import orjson
import redis
from pydantic import BaseModel

from schemas import BatchResult


class RejectedBatch(BaseModel):
    """A batch the worker refused for good, with every reason."""

    batch_id: str
    source: str
    submitted_at: dt.datetime | None
    rejected_at: dt.datetime
    result: BatchResult


def _keys(queue: str) -> tuple[str, str]:
    return f"{queue}:rejected", f"{queue}:rejected:data"


def record_rejection(client: redis.Redis, queue: str, rejected: RejectedBatch, keep: int) -> None:
    """Remember a rejected batch; only the newest ``keep`` are kept."""
    index_key, data_key = _keys(queue)
    with client.pipeline() as pipe:
        pipe.hset(data_key, rejected.batch_id, rejected.model_dump_json())
        pipe.zadd(index_key, {rejected.batch_id: rejected.rejected_at.timestamp()})
        pipe.execute()
    overflow = client.zrange(index_key, 0, -keep - 1)
    if overflow:
        with client.pipeline() as pipe:
            pipe.zrem(index_key, *overflow)
            pipe.hdel(data_key, *overflow)
            pipe.execute()


def list_rejections(client: redis.Redis, queue: str, limit: int = 100) -> list[RejectedBatch]:
    """The newest rejected batches first."""
    index_key, data_key = _keys(queue)
    batch_ids = cast(list[bytes], client.zrevrange(index_key, 0, limit - 1))  # responses never decoded
    if not batch_ids:
        return []
    payloads = client.hmget(data_key, batch_ids)
    return [RejectedBatch.model_validate(orjson.loads(p)) for p in payloads if p is not None]


def find_rejection(client: redis.Redis, queue: str, batch_id: str) -> RejectedBatch | None:
    payload = client.hget(_keys(queue)[1], batch_id)
    return RejectedBatch.model_validate(orjson.loads(payload)) if payload else None
