"""What a batch did to the catalog: the result every apply, task and CLI reports."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class BatchStatus(StrEnum):
    """Final outcome of a batch."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


class RecordError(BaseModel):
    """One problem with one record of a batch."""

    model_config = ConfigDict(frozen=True)

    index: int | None = Field(description="Position of the record in the batch (0-based); None for the batch.")
    product_id: str | None = Field(None, description="The record's product_id, when it has a readable one.")
    loc: str = Field("", description="Field path inside the record, e.g. pricing[0].price_aed.")
    msg: str


class SupersededField(BaseModel):
    """A field a batch did not write, because a batch with a higher sequence already had."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="Position of the record in the batch (0-based).")
    product_id: str
    field: str
    by_sequence: int = Field(description="Sequence of the batch that last wrote the field.")


class BatchResult(BaseModel):
    """The outcome of applying one batch."""

    batch_id: str
    status: BatchStatus
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = Field(0, description="Products removed: only `catalog revert --delete-created` removes any.")
    errors: list[RecordError] = Field(default_factory=list)
    backup: str | None = None
    sequence: int | None = Field(None, description="Submission order of the batch (Redis INCR at enqueue).")
    fence: int | None = Field(None, description="Fencing token of the lock acquisition that recorded it.")
    superseded: list[SupersededField] = Field(default_factory=list)
    original: BatchResult | None = Field(None, description="For a duplicate: the result it first had.")
    content_sha256: str | None = Field(None, description="Digest of the batch's records (schemas.records_digest).")
    content_matches: bool | None = Field(
        None, description="For a duplicate: whether its records are the original's (None: the original's are unknown). "
        "False means the batch id was reused for other records, and nothing of them was applied.")
