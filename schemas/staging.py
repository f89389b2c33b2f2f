"""What workers pass each other through Redis when one holds the catalog lock (worker/staging.py).

A worker that finds the lock held stages its batches for the holder, and waits for each one's
outcome on a list of its own. Both travel through Redis, where anyone with access can write:
strict types, no unknown keys, an answer list of the one shape a worker makes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.batch import MAX_SAFE_INTEGER, BatchId
from schemas.result import BatchResult

REPLY_KEY_PREFIX = "catalog-ingest:staging:reply:"
REPLY_KEY_PATTERN = r"^catalog-ingest:staging:reply:[0-9a-f]{32}$"


class StagedBatch(BaseModel):
    """A batch a worker checked (size, sequence) and hands to the lock holder, who checks it again."""

    model_config = ConfigDict(extra="forbid", strict=True)

    batch_id: BatchId
    sequence: Annotated[int, Field(ge=1, le=MAX_SAFE_INTEGER)] | None
    source: Annotated[str, Field(min_length=1, max_length=200)]
    final_attempt: bool
    records: list[Any]
    reply_to: Annotated[str, Field(pattern=REPLY_KEY_PATTERN)]


class StagedOutcome(BaseModel):
    """The holder's answer for one staged batch, once the commit that carried it is durable:
    its result, or ``retry`` (it patches products a lower, pending batch may create)."""

    model_config = ConfigDict(extra="forbid")

    batch_id: BatchId
    result: BatchResult | None = None
    retry: str | None = None
