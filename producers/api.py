"""The producer API: submit batches to the queue and follow them. Never imports ``worker``.

    settings = load_settings()
    producer = Producer(settings)
    handle = producer.submit(records, source="supplier-feed")
    result = handle.wait(timeout=60)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult
from celery.exceptions import BackendError
from kombu.exceptions import OperationalError

from catalog_core.celery_config import TASK_INGEST, celery_config
from catalog_core.redis_client import connect, display_url
from catalog_core.sequence import abandon_sequence, next_sequence
from catalog_core.errors import BatchRefusedError, BatchTooLargeError, RedisUnavailableError, WaitTimeoutError
from catalog_core.metric_keys import record_lost
from catalog_core.settings import Settings
from producers.chunks import ChunkLimits, chunked_file, numbered
from producers.files import read_batch_file
from producers.state import BatchState
from producers.tracking import Submission, find_submission, record_submission
from schemas import BatchMessage, BatchResult, BatchStatus
from schemas.batch import digest_of, records_json
from schemas.validation import check_record

# Celery states as people say them.
STATE_NAMES = {"PENDING": "queued", "RECEIVED": "queued", "STARTED": "running", "RETRY": "retrying",
               "FAILURE": "failed", "REVOKED": "failed"}
FINAL_STATES = {"SUCCESS", "FAILURE", "REVOKED"}


def new_batch_id() -> str:
    return f"batch-{uuid.uuid4().hex}"


def client_app(settings: Settings, *, results: bool) -> Celery:
    """A Celery app with the workers' serializer, queue and transport options.

    The sending app has no result backend: with one, Celery subscribes to every sent task's
    result channel, and after a Redis outage that subscriber gives up for good. Results are
    read by polling (a GET per look) through a second app that only reads.
    """
    app = Celery("catalog-ingest-producer", set_as_current=False)
    config = celery_config(settings)
    if not results:
        config["result_backend"] = None
    else:
        # A reader asks again by itself (wait polls): with Redis down, fail at once with a clear
        # error instead of Celery's ten logged retries, tracebacks included.
        config["result_backend_always_retry"] = False
    app.conf.update(config)
    return app


class BatchHandle:
    """A submitted batch: ask its state, or wait for its result.

    ``resubmitted``: this handle's records were not queued, because the batch id was already
    known; its final state is then a ``duplicate`` of the original, saying whether the records
    are the same (``content_matches``).
    """

    def __init__(self, batch_id: str, app: Celery, client: Callable[[], redis.Redis], queue: str, *,
                 records: int = 0, sequence: int | None = None, submitted: bool = False,
                 result_expires: int, resubmitted_digest: str | None = None) -> None:
        self.batch_id = batch_id
        self.result_expires = result_expires
        self.records = records
        self.sequence = sequence
        self.submitted = submitted
        self.resubmitted_digest = resubmitted_digest
        # Whether this handle knows the batch was queued: it queued it, or it found the batch's
        # submission record (a resubmission, as after "Redis failed right after"). Such a batch
        # with no trace left in Redis is lost, to be submitted again; a handle of an id it knows
        # nothing of cannot tell that from an id never queued here ("unknown").
        self.known_queued = submitted or resubmitted_digest is not None
        self._client, self._queue = client, queue
        self._result = AsyncResult(batch_id, app=app)

    def state(self) -> BatchState:
        try:
            raw_state = self._result.state
            if raw_state == "SUCCESS":
                return BatchState(self.batch_id, "done", result=self._as_seen(self._result.result))
            reason = str(self._result.result) if raw_state in {"FAILURE", "RETRY", "REVOKED"} else None
            submission = find_submission(self._client(), self._queue, self.batch_id)
        except (OperationalError, BackendError, redis.RedisError) as exc:
            raise RedisUnavailableError(f"cannot read the state of batch {self.batch_id}: {exc}") from None
        if raw_state in {"FAILURE", "REVOKED"}:
            return BatchState(self.batch_id, "failed", reason=reason)
        # A retry's message goes out before its RETRY state is stored: Redis losing its data in
        # between (restarted empty) keeps the state, and loses the message and the submission
        # record. A handle that knows it queued the batch cannot tell that from a live retry
        # without the record, and submitting again is safe (a duplicate is caught).
        stale_retry = raw_state == "RETRY" and self.known_queued
        if submission is None and (raw_state not in {"STARTED", "RETRY"} or stale_retry):
            # (A worker on it says it is not lost, even from a producer that keeps no submission
            # record: another language's, or a message pushed by hand.)
            if self.known_queued:
                # Only a producer can tell (catalog_core/metric_keys.py): counted once per batch.
                record_lost(self._client(), self._queue, self.batch_id, self.result_expires)
                return BatchState(self.batch_id, "lost", reason=(
                    "no trace of it is left in Redis (it lost its data?); resubmit it with the same batch id, "
                    "which is safe"))
            return BatchState(self.batch_id, "unknown", reason=(
                "no producer queued this id here, or its result expired (CATALOG_RESULT_EXPIRES)"))
        name = STATE_NAMES.get(raw_state, raw_state.lower())
        return BatchState(self.batch_id, name, reason=reason, since=submission.submitted_at if submission else None)

    def _as_seen(self, payload: Any) -> BatchResult:
        result = BatchResult.model_validate(payload)
        if self.resubmitted_digest is None:
            return result
        original = result.original if result.status == BatchStatus.DUPLICATE and result.original else result
        known = original.content_sha256 or result.content_sha256
        return BatchResult(batch_id=self.batch_id, status=BatchStatus.DUPLICATE, original=original,
                           sequence=result.sequence, content_sha256=self.resubmitted_digest,
                           content_matches=None if known is None else known == self.resubmitted_digest)

    def wait(self, timeout: float, poll: float = 0.2) -> BatchState:
        """Poll until the batch is final; ``WaitTimeoutError`` when ``timeout`` runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.state()
            if current.final:
                return current
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"batch {self.batch_id} is still {current.state} after {timeout:g}s; "
                    f"ask again with `catalog status {self.batch_id}`"
                )
            time.sleep(poll)


def chunked(records: Sequence[Any], size: int | None) -> list[Sequence[Any]]:
    """Records already in memory, split into lists of ``size``. Files are split by producers/chunks.py."""
    if not size or len(records) <= size:
        return [records]
    return [records[start : start + size] for start in range(0, len(records), size)]


class Producer:
    """Submits batches, checking locally first what can be checked without the catalog."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = client_app(settings, results=False)
        self.results_app = client_app(settings, results=True)
        self._redis: redis.Redis | None = None

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = connect(self.settings.redis_url)
        return self._redis

    def check(self, records: Sequence[Any]) -> None:
        """Refuse, before queueing, a batch over the limits or with records that can never be valid."""
        self._checked_json(records)

    def _checked_json(self, records: Sequence[Any]) -> bytes:
        """``check``, returning the records' canonical JSON (serialized once: size and digest)."""
        BatchTooLargeError.check_items(len(records), self.settings.max_batch_items)
        canonical = records_json(records)
        BatchTooLargeError.check_bytes(len(canonical), self.settings.max_batch_bytes)
        errors = [error for index, record in enumerate(records) for error in check_record(record, index)]
        if errors:
            raise BatchRefusedError(f"{len(errors)} invalid record(s); the batch was not queued", errors)
        return canonical

    def submit(self, records: Iterable[Any], *, batch_id: str | None = None, source: str = "api") -> BatchHandle:
        """Check and queue one all-or-nothing batch. ``batch_id`` lets a caller retry safely.

        A batch id that was already queued (and is not lost) is not queued again: the handle
        answers ``duplicate`` with the original's outcome, and says whether the records differ.
        """
        items = list(records)
        digest = digest_of(self._checked_json(items))
        if batch_id is not None and self._already_submitted(batch_id):
            return self._handle(batch_id, records=len(items), resubmitted_digest=digest)
        # Taken after the checks, so refused batches leave no gap in the sequence.
        sequence = next_sequence(self.redis, self.settings.queue)
        message = BatchMessage(batch_id=batch_id or new_batch_id(), source=source, items=items, sequence=sequence)
        try:
            self.app.send_task(
                TASK_INGEST, args=[message.model_dump(mode="json")], task_id=message.batch_id,
                queue=self.settings.queue,
            )
        except OperationalError as exc:
            abandon_sequence(self.redis, self.settings.queue, sequence)
            raise RedisUnavailableError(
                f"cannot reach the broker at {display_url(self.settings.redis_url)} to queue batch "
                f"{message.batch_id}: {exc}"
            ) from None
        # Recorded only once the batch is on the queue: a record without its message would make
        # a resubmission answer "duplicate" for a batch that never was queued. Missing, the record
        # only makes status say "unknown" until the result, and a resubmission sends it again
        # (the workers' ledger answers duplicate).
        try:
            record_submission(self.redis, self.settings.queue, Submission(
                batch_id=message.batch_id, source=source, sequence=sequence, records=len(items),
                content_sha256=digest, submitted_at=message.submitted_at), self.settings.result_expires)
        except RedisUnavailableError as exc:
            raise RedisUnavailableError(f"batch {message.batch_id} was queued, but Redis failed right after "
                                        f"({exc}); submitting it again with the same batch id is safe") from None
        return self._handle(message.batch_id, records=len(items), sequence=sequence, submitted=True)

    def _already_submitted(self, batch_id: str) -> bool:
        """Queued before and not lost. The submission record lives as long as results do, so it
        alone answers (with the Redis the sequence comes from: no second connection)."""
        return find_submission(self.redis, self.settings.queue, batch_id) is not None

    def _handle(self, batch_id: str, **details: Any) -> BatchHandle:
        return BatchHandle(batch_id, self.results_app, lambda: self.redis, self.settings.queue,
                           result_expires=self.settings.result_expires, **details)

    def submit_file(self, path: str | Path, *, source: str | None = None, batch_id: str | None = None,
                    chunk_size: int | None = None) -> list[BatchHandle]:
        """Queue a batch file; with ``chunk_size``, as several batches, each all or nothing on its own.

        Without ``chunk_size`` the file is one batch, within CATALOG_MAX_BATCH_BYTES. With it, the
        file (up to CATALOG_MAX_FILE_BYTES) is streamed into batches of at most ``chunk_size``
        records and CATALOG_MAX_BATCH_BYTES each; every batch is checked before the first is sent.
        """
        label = source or Path(str(path)).name
        if not chunk_size:
            batch = read_batch_file(path, self.settings.max_batch_bytes)
            return [self.submit(batch.records, batch_id=batch_id, source=label)]
        with chunked_file(path, ChunkLimits.of(self.settings, chunk_size)) as chunks:
            count = chunks.count(check=lambda chunk: self.check(chunk.records))
            return [self.submit(chunk.records, batch_id=chunk_id, source=label if count == 1 else f"{label}#{number}")
                    for number, chunk_id, chunk in numbered(chunks, chunks.source, count, batch_id, new_batch_id)]

    def handle(self, batch_id: str) -> BatchHandle:
        return self._handle(batch_id)
