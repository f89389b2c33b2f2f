"""The message a producer puts on the queue for one batch."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 2
MAX_SAFE_INTEGER = 2**53 - 1  # exact in every JSON implementation
SUPPORTED_VERSIONS = (1, 2)

BatchId = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$",
          description="Unique id of the batch; also the Celery task id, so status can be asked by it."),
]


class BatchMessage(BaseModel):
    """One batch on the queue. Workers refuse a message they do not understand."""

    model_config = ConfigDict(extra="forbid")

    # 1: no sequence (the worker takes one when it applies); 2: sequence taken at enqueue.
    schema_version: Literal[1, 2] = SCHEMA_VERSION
    batch_id: BatchId
    sequence: int | None = Field(None, ge=1, le=MAX_SAFE_INTEGER,
                                 description="Submission order, from the queue's sequence counter when enqueued.")
    source: Annotated[str, Field(min_length=1, max_length=200)] = "unknown"
    submitted_at: AwareDatetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    items: list[Any] = Field(description="Product records; checked one by one by the store, all or nothing.")


def records_json(records: Sequence[Any]) -> bytes:
    """A batch's records as canonical JSON (keys sorted), serialized once for two uses: its length
    is the size ``CATALOG_MAX_BATCH_BYTES`` counts (sorting keys does not change it), its sha256
    the digest (``digest_of``)."""
    return orjson.dumps(list(records), option=orjson.OPT_SORT_KEYS, default=str)


def digest_of(canonical: bytes) -> str:
    """The digest of records given as ``records_json``: the same whatever their keys' order.

    Kept in the ledger, so that a batch id reused for other records is told apart from a retry.
    """
    return hashlib.sha256(canonical).hexdigest()


def records_digest(records: Sequence[Any]) -> str:
    return digest_of(records_json(records))
