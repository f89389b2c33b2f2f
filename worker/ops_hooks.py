"""Celery signal hooks for operations: the log format, a batch's fields on its log lines, the lock
holder's worker name, beat's start time (the rotation health check counts from it), and the
startup objects frozen out of the garbage collector's reach once a worker is ready.

Installed by worker/app.py ``create_app``. Each hook is best effort: a failure is logged and the
worker goes on, since none of this may stop ingestion.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from celery import signals

from catalog_core.celery_config import TASK_INGEST
from catalog_core.errors import CatalogError
from catalog_core.logs import apply_format, reset_batch_context, set_batch_context, url_secrets
from catalog_core.redis_client import connect
from catalog_core.settings import Settings
from worker import collector, lock, metrics

log = logging.getLogger(__name__)

FIELD_MAX_CHARS = 200  # a message's fields are untrusted: bounded on every log line


class HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


def _field(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value[:FIELD_MAX_CHARS] if isinstance(value, str) else value


def batch_fields(args: Any) -> dict[str, Any]:
    """batch_id, sequence and source of an ingest task's payload (its first argument), where present."""
    payload = args[0] if isinstance(args, list | tuple) and args else None
    if not isinstance(payload, dict):
        return {}
    return {name: _field(payload.get(name)) for name in ("batch_id", "sequence", "source")}


def install(context: HasSettings) -> None:
    """Connect the hooks (once per process: ``dispatch_uid``)."""
    tokens: dict[str, Any] = {}

    def format_logs(logger: logging.Logger, **_: Any) -> None:
        try:
            settings = context.settings
        except CatalogError:
            return  # the worker stops with the settings error itself
        apply_format(logger, settings.log_format, url_secrets([settings.redis_url, settings.result_url]))

    def batch_started(task_id: str, task: Any, args: Any = None, **_: Any) -> None:
        if getattr(task, "name", None) == TASK_INGEST:
            tokens[task_id] = set_batch_context(**batch_fields(args))

    def batch_ended(task_id: str, **_: Any) -> None:
        token = tokens.pop(task_id, None)
        if token is not None:
            reset_batch_context(token)

    def name_lock_holder(sender: str, **_: Any) -> None:
        lock.holder_name = str(sender)  # the node name; prefork children inherit it

    def beat_started(**_: Any) -> None:
        try:
            settings = context.settings
            client = connect(settings.redis_url)
        except CatalogError as exc:
            log.warning("could not record beat's start for `catalog health` (%s)", exc)
            return
        metrics.record_beat_start(client, settings.queue, time.time())

    signals.after_setup_logger.connect(format_logs, weak=False, dispatch_uid="catalog-log-format")
    signals.after_setup_task_logger.connect(format_logs, weak=False, dispatch_uid="catalog-task-log-format")
    signals.task_prerun.connect(batch_started, weak=False, dispatch_uid="catalog-batch-context")
    signals.task_postrun.connect(batch_ended, weak=False, dispatch_uid="catalog-batch-context-end")
    signals.celeryd_after_setup.connect(name_lock_holder, weak=False, dispatch_uid="catalog-lock-holder")
    signals.beat_init.connect(beat_started, weak=False, dispatch_uid="catalog-beat-start")
    signals.worker_ready.connect(lambda **_: collector.freeze_startup_objects(), weak=False,
                                 dispatch_uid="catalog-freeze-startup")
