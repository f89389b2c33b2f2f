"""The trace a producer leaves in Redis for each batch it queues, so that status can tell
*queued* from *unknown* and from *lost*, and a resubmitted batch id is recognised before it
is queued again.

``<queue>:submitted:<batch_id>`` holds a small JSON record (when, sequence, source, records,
digest of the records) for as long as results are kept. It lives beside the queue, so a Redis
that loses its data loses both together: a batch still waiting for its result with no trace
left was lost, and its producer should resubmit it (with the same batch id, which is safe).
"""

from __future__ import annotations


import redis
from pydantic import AwareDatetime, BaseModel, ValidationError

from catalog_core.errors import RedisUnavailableError

MAX_RECORD_BYTES = 4096  # anyone can write to Redis: a record bigger than ours is not ours


class Submission(BaseModel):
    """What a producer recorded when it queued a batch."""

    batch_id: str
    source: str
    sequence: int | None
    records: int
    content_sha256: str
    submitted_at: AwareDatetime


def submission_key(queue: str, batch_id: str) -> str:
    return f"{queue}:submitted:{batch_id}"


def record_submission(client: redis.Redis, queue: str, submission: Submission, keep_seconds: int) -> None:
    try:
        client.set(submission_key(queue, submission.batch_id), submission.model_dump_json(), ex=keep_seconds)
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot record batch {submission.batch_id} as submitted: {exc}") from None


def find_submission(client: redis.Redis, queue: str, batch_id: str) -> Submission | None:
    """The record of ``batch_id``'s submission, or None (never queued here, expired, or lost with Redis' data)."""
    try:
        raw = client.get(submission_key(queue, batch_id))
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot read the submission of batch {batch_id}: {exc}") from None
    if raw is None or len(raw) > MAX_RECORD_BYTES:
        return None
    try:
        return Submission.model_validate_json(raw)
    except ValidationError:
        return None
