"""Building the Celery app from the settings. Configuration is loaded lazily, on Celery's first need."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from celery import Celery, signals

from catalog_core.celery_config import TASK_ROTATE, celery_config
from catalog_core.errors import SettingsError
from catalog_core.settings import Settings, check_timing_rules, load_settings, unknown_setting_variables
from catalog_core.settings_rules import one_line, unknown_variable_warning
from worker import bad_messages, message_json, metrics, ops_hooks
from worker.broker_transport import TRANSPORT
from schemas.staging import StagedBatch
from worker.group_commit import GroupCommitter
from worker.lock import lock_name
from worker.staging import StagingArea, staging_key
from worker.store import CatalogStore
from worker.write_attempt import BatchRequest, CommitStats
from worker.tasks import register_tasks

logger = logging.getLogger(__name__)


class WorkerContext:
    """What the tasks of one app share: the settings and, per process, one store (one Redis client,
    one cached catalog) and one group committer for the pool's threads."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._store: CatalogStore | None = None
        self._committer: GroupCommitter | None = None
        self._creating = threading.Lock()  # the pool's threads ask for these at once

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = settings_from_environment()
        return self._settings

    @property
    def store(self) -> CatalogStore:
        with self._creating:
            if self._store is None:
                self._store = CatalogStore(self.settings)
                self._store.on_commit = self._record_commit
            return self._store

    def _record_commit(self, stats: CommitStats) -> None:
        store = self._store
        if store is not None:
            metrics.record_commit(store.redis, self.settings.queue, stats.batches, stats.commit_seconds,
                                  stats.lock_wait_seconds, stats.committed_at, stats.results)

    def on_worker_shutting_down(self, **_: Any) -> None:
        """A holder's drain thread ends after its current commit (waited for up to the lock timeout):
        a process that exited holding the lock would make the other workers wait for its expiry."""
        committer = self._committer
        if committer is not None:
            committer.stop_draining(self.settings.lock_timeout)

    @property
    def committer(self) -> GroupCommitter:
        store = self.store
        with self._creating:
            if self._committer is None:
                settings = self.settings
                staging = StagingArea(lambda: store.redis, lambda: staging_key(lock_name(store.path)),
                                      settings.max_batch_bytes, lambda staged: staged_request(store, staged),
                                      settings.group_commit_max_bytes)
                self._committer = GroupCommitter(store.apply_group, settings.group_commit_max_batches,
                                                 staging if settings.staging else None, settings.lock_timeout,
                                                 store.knows_latest)
            return self._committer


def staged_request(store: CatalogStore, staged: StagedBatch) -> BatchRequest:
    """A batch another worker staged, checked as this worker checks its own: the sequence issued
    (anyone can write to Redis), and the size limits."""
    if staged.sequence is not None and not store.sequence_issued(staged.sequence)[0]:
        raise ValueError(f"staged batch {staged.batch_id}: sequence {staged.sequence} was never issued")
    return store.request(staged.records, staged.batch_id, staged.sequence, staged.final_attempt, staged.source)


def settings_from_environment() -> Settings:
    """The settings of a worker or beat, from ``CATALOG_*``, the timing rules included.

    A ``CATALOG_*`` variable that sets nothing is logged with the nearest name, and the worker
    starts anyway: during a rolling upgrade the environment may already name a setting this
    version does not have, and refusing to start then would stop every old worker.
    """
    settings = load_settings()
    for name, nearest in unknown_setting_variables(os.environ):
        logger.warning("catalog-ingest settings: %s", unknown_variable_warning(name, nearest))
    return settings


def exit_for_bad_settings(exc: SettingsError) -> NoReturn:
    """One line on stderr and exit 2 (bad input), as the CLI does: a traceback would bury the one line
    that matters. A misspelled variable, the likely cause, is named in the same line."""
    unknown = [unknown_variable_warning(name, nearest) for name, nearest in unknown_setting_variables(os.environ)]
    print(f"catalog-ingest: cannot start: {one_line(chr(10).join([str(exc), *unknown]))}", file=sys.stderr, flush=True)
    raise SystemExit(exc.exit_code)


def worker_config(settings: Settings) -> dict[str, Any]:
    """The shared Celery configuration plus what only workers and beat need (the timing rules checked)."""
    check_timing_rules(settings)
    return {
        **celery_config(settings),
        # kombu's Redis transport with the fixes a worker needs to survive a Redis restart and
        # any message (see worker/broker_transport.py), and a consumer that rejects, with the
        # reason, what it cannot run (worker/bad_messages.py).
        "broker_transport": TRANSPORT,
        # Threads, not processes: the batches of one worker's threads share one commit
        # (worker/group_commit.py) and one cached catalog. The work is the disk's and Redis's;
        # Python time per batch is small. (A thread pool enforces no task_time_limit: the lock
        # expiry and the Redis timeouts bound a write, and the visibility timeout redelivers.)
        "worker_pool": "threads",
        "worker_concurrency": settings.worker_threads,
        "worker_consumer": f"{bad_messages.__name__}:Consumer",
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "beat_schedule": {
            "rotate-backups": {
                "task": TASK_ROTATE,
                "schedule": settings.rotate_every,
                # A rotation that waited longer than its period is useless: the next one is due.
                "options": {"expires": settings.rotate_every},
            }
        },
    }


class LazyConfig(Mapping[str, Any]):
    """Celery configuration built on first use.

    Celery reads its configuration source only when it first needs it (worker or beat start),
    and a mapping that fails then stops the process with the error. (An ``on_configure``
    handler would not: Celery logs a failing signal handler and goes on with its defaults,
    i.e. a worker that tries amqp://localhost instead of saying that CATALOG_* is wrong.)
    """

    def __init__(self, context: WorkerContext, exit_on_bad_settings: bool = False) -> None:
        self._context = context
        self._exit_on_bad_settings = exit_on_bad_settings
        self._config: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._config is None:
            try:
                self._config = worker_config(self._context.settings)
            except SettingsError as exc:
                if self._exit_on_bad_settings:
                    exit_for_bad_settings(exc)
                raise
        return self._config

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def create_app(settings: Settings | None = None, *, exit_on_bad_settings: bool = False) -> Celery:
    """A Celery app for the workers. Without ``settings`` they are read from the environment
    when Celery first needs its configuration, not when this function runs.

    ``exit_on_bad_settings``: for the app the ``celery`` command loads (worker/celery.py), invalid
    settings print one line and exit 2 instead of raising ``SettingsError`` through Celery.
    """
    context = WorkerContext(settings)
    app = Celery("catalog-ingest", set_as_current=False)
    app.config_from_object(LazyConfig(context, exit_on_bad_settings))
    register_tasks(app, context)
    # Sent in the worker process when a shutdown begins (warm or cold). Weak: gone with the context.
    signals.worker_shutting_down.connect(context.on_worker_shutting_down)
    bad_messages.install(app, context)
    message_json.install()  # the same values as kombu's JSON decoder, at orjson's speed
    ops_hooks.install(context)  # log format, a batch's fields on its log lines, lock holder name, beat start
    return app
