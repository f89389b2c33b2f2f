"""Celery tasks: thin. Parse the message, call the store, report.

Outcomes of ``catalog.ingest_batch``:
- ``applied`` / ``unchanged``: returned as the task result;
- ``rejected`` (invalid records, bad or too large message): returned, recorded for
  ``catalog rejected``, never retried;
- ``duplicate``: the batch id was already applied (a redelivery, a producer's retry):
  returned with the original outcome, nothing changes;
- lock timeout, Redis failure, corrupt catalog, or a patch of products that lower-sequence
  batches may still create: retried with exponential backoff and full jitter, up to
  ``CATALOG_MAX_RETRIES``, then the task fails with the reason (or, for the last case, the
  batch is rejected).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import redis
from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from pydantic import ValidationError

from catalog_core.celery_config import TASK_INGEST, TASK_ROTATE
from catalog_core.errors import BatchFailedError, BatchTooLargeError, CatalogError
from catalog_core.rejections import RejectedBatch, record_rejection
from catalog_core.sequence import abandon_sequence, issued_ceiling
from catalog_core.settings import Settings
from schemas import BatchMessage, BatchResult, BatchStatus, RecordError, format_loc
from schemas.batch import SUPPORTED_VERSIONS
from worker import metrics
from worker.backup_policy import BackupPolicy
from worker.backups import rotate_backups

if TYPE_CHECKING:
    from worker.group_commit import GroupCommitter
    from worker.store import CatalogStore

log = logging.getLogger("catalog.worker")

# What a retry can cure: everything but the declared permanent outcomes (rejected, duplicate),
# which are returned, never raised. Redis and file-system errors that escape the store's own
# wrappers are passing trouble too.
TRANSIENT = (CatalogError, SoftTimeLimitExceeded, redis.RedisError, OSError)


class Context(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> CatalogStore: ...

    @property
    def committer(self) -> GroupCommitter: ...


def _count(context: Context, record: Any) -> None:
    """Record a metric with the store's Redis client (worker/metrics.py); never fails the batch."""
    try:
        record(context.store.redis, context.settings.queue)
    except CatalogError as exc:  # no client (Redis down at first use); metrics.* swallow the rest
        log.warning("metrics not recorded: %s", exc)


def _parse_message(payload: Any, task_id: str) -> BatchMessage | BatchResult:
    """The message, or a rejection that says why this worker does not understand it."""
    try:
        return BatchMessage.model_validate(payload)
    except ValidationError as exc:
        errors = [
            RecordError(index=None, loc=format_loc(e["loc"]), msg=f"invalid batch message: {e['msg']}")
            for e in exc.errors(include_url=False, include_input=False)
        ]
        version = payload.get("schema_version") if isinstance(payload, dict) else None
        if version not in (None, *SUPPORTED_VERSIONS):
            errors = [RecordError(index=None, loc="schema_version", msg=(
                f"unsupported schema_version {version!r}: this worker understands "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))}; upgrade the workers or the producer"))]
        batch_id = payload.get("batch_id") if isinstance(payload, dict) else None
        return BatchResult(batch_id=str(batch_id or task_id), status=BatchStatus.REJECTED, errors=errors)


def abandon(context: Context, message: BatchMessage | dict[str, Any] | None) -> None:
    """A batch that ends without a ledger entry gives its sequence up, so later batches do not wait for it.

    Only a sequence the counter really issued: a forged one in the abandoned set would be
    completed into the state and could drag the ordering far ahead. Best effort.
    """
    sequence = message.sequence if isinstance(message, BatchMessage) else (message or {}).get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
        return
    try:
        if sequence <= issued_ceiling(context.store.redis, context.settings.queue):
            abandon_sequence(context.store.redis, context.settings.queue, sequence)
    except CatalogError as exc:
        log.warning("could not give up sequence %s (%s); the gap closes when it leaves the open window",
                    sequence, exc)


def _reject(context: Context, result: BatchResult, message: BatchMessage | None, final_attempt: bool) -> dict[str, Any]:
    rejected = RejectedBatch(
        batch_id=result.batch_id,
        source=message.source if message else "unknown",
        submitted_at=message.submitted_at if message else None,
        rejected_at=dt.datetime.now(dt.UTC),
        result=result,
    )
    settings = context.settings
    try:
        record_rejection(context.store.redis, settings.queue, rejected, settings.rejected_keep)
    except redis.RedisError as exc:
        if not final_attempt:
            raise  # retried; the ledger answers the redelivery, and it is recorded then
        log.error("batch %s: rejected, but the record for `catalog rejected` could not be written: %s",
                  result.batch_id, exc)
    log.warning(
        "batch %s from %s rejected: %d problem(s), first: %s",
        result.batch_id, rejected.source, len(result.errors), result.errors[0].msg if result.errors else "-",
    )
    return result.model_dump(mode="json")


def _forged_sequence(context: Context, message: BatchMessage) -> BatchResult | None:
    """A rejection for a sequence the counter never issued (anyone with Redis access can push a message)."""
    if message.sequence is None:
        return None
    issued, ceiling = context.store.sequence_issued(message.sequence)
    if issued:
        return None
    return BatchResult(batch_id=message.batch_id, status=BatchStatus.REJECTED, errors=[RecordError(
        index=None, loc="sequence", msg=f"sequence {message.sequence} was never issued (the counter is at "
        f"{ceiling}); take sequences from the queue's counter (docs/message-format.md)")])


def _apply(task: Task, context: Context, message: BatchMessage, final_attempt: bool) -> tuple[dict[str, Any], bool]:
    """The batch's outcome, and whether a commit decided it (then the commit counted it in the metrics)."""
    log.info("batch %s from %s: %d record(s), attempt %d",
             message.batch_id, message.source, len(message.items), task.request.retries + 1)
    forged = _forged_sequence(context, message)
    if forged is not None:
        return _reject(context, forged, message, final_attempt), False
    try:
        request = context.store.request(message.items, message.batch_id, message.sequence, final_attempt,
                                        message.source)
        result = context.committer.apply(request)
    except BatchTooLargeError as exc:
        abandon(context, message)
        too_large = BatchResult(batch_id=message.batch_id, status=BatchStatus.REJECTED,
                                errors=[RecordError(index=None, msg=str(exc))])
        return _reject(context, too_large, message, final_attempt), False
    if result.status == BatchStatus.REJECTED:
        return _reject(context, result, message, final_attempt), True
    original = result.original
    if original is not None and original.status == BatchStatus.REJECTED and result.content_matches is not False:
        # Rejected before, perhaps by this very delivery whose record of it then failed: record
        # it again (idempotent, keyed by batch id), so `catalog rejected` never misses it.
        _reject(context, original.model_copy(update={"batch_id": message.batch_id}), message, final_attempt)
    log.info("batch %s from %s %s (sequence %s): %d created, %d updated, %d unchanged, %d superseded field(s)",
             message.batch_id, message.source, result.status.value, result.sequence, result.created, result.updated,
             result.unchanged, len(result.superseded), extra={"fence": result.fence})
    return result.model_dump(mode="json"), True


def _retry_or_fail(task: Task, context: Context, message: BatchMessage | None, exc: BaseException) -> NoReturn:
    settings = context.settings
    batch_id = message.batch_id if message else task.request.id
    source = message.source if message else "unknown"
    if task.request.retries >= settings.max_retries:
        abandon(context, message)
        log.error("batch %s from %s failed after %d attempts: %s", batch_id, source, task.request.retries + 1, exc)
        _count(context, lambda client, queue: metrics.record_failure(client, queue, batch_id))
        raise BatchFailedError(f"gave up after {task.request.retries + 1} attempts: {exc}") from None
    countdown = get_exponential_backoff_interval(
        factor=1, retries=task.request.retries, maximum=settings.retry_backoff_max, full_jitter=True
    )
    log.warning("batch %s from %s will retry in %ss: %s", batch_id, source, countdown, exc)
    try:
        raise task.retry(exc=exc, countdown=countdown, max_retries=settings.max_retries) from None
    except Reject as failed:
        # Celery could not publish the retry (Redis is down) and would drop the batch
        # (requeue=False). Give it back instead: requeued now, or redelivered after the
        # visibility timeout if Redis cannot even take the requeue.
        log.warning("batch %s: could not schedule the retry (%s); handing it back", batch_id, failed)
        raise Reject(failed.reason, requeue=True) from None


def ingest_batch(task: Task, context: Context, payload: Any) -> dict[str, Any]:
    """One delivery of a batch: a final outcome, or a retry for anything a retry can cure."""
    parsed = _parse_message(payload, task.request.id)
    message = parsed if isinstance(parsed, BatchMessage) else None
    final_attempt = task.request.retries >= context.settings.max_retries
    try:
        if isinstance(parsed, BatchResult):
            abandon(context, payload if isinstance(payload, dict) else None)
            outcome, counted = _reject(context, parsed, None, final_attempt), False
        else:
            outcome, counted = _apply(task, context, parsed, final_attempt)
        if not counted:  # outcomes a commit decided are counted with it, in one round trip for the group
            _count(context, lambda client, queue: metrics.record_batch(client, queue, BatchResult.model_validate(outcome)))
        return outcome
    except TRANSIENT as exc:
        # The soft limit is longer than the lock timeout, so hitting it means a slow disk or a
        # huge catalog: worth another try, like a lock timeout.
        _retry_or_fail(task, context, message, exc)


def rotate(context: Context) -> dict[str, Any]:
    """Thin, compress and cap the backups (worker/backup_policy.py); one log line per pass."""
    settings = context.settings
    report = rotate_backups(settings.catalog_path, settings.backup_path, BackupPolicy.from_settings(settings))
    log.info("%s", report.summary())
    _count(context, lambda client, queue: metrics.record_rotation(client, queue, time.time()))
    return report.as_dict()


def register_tasks(app: Celery, context: Context) -> None:
    """Bind the tasks to ``app``; they reach settings and store through ``context``.

    ``shared=False``: by default Celery also gives a decorated task to every app created later
    in the process, and a second app would run the first one's closure (its settings, its store).
    """

    @app.task(name=TASK_INGEST, bind=True, acks_late=True, reject_on_worker_lost=True, shared=False)
    def ingest_batch_task(self: Task, payload: Any) -> dict[str, Any]:
        return ingest_batch(self, context, payload)

    @app.task(name=TASK_ROTATE, ignore_result=True, shared=False)
    def rotate_backups_task() -> dict[str, Any]:
        return rotate(context)
