"""Building the Celery app from the settings. Configuration is loaded lazily, on Celery's first need."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery

from catalog_core.celery_config import TASK_ROTATE, celery_config
from catalog_core.settings import Settings, load_settings
from worker import bad_messages
from worker.broker_transport import TRANSPORT
from worker.store import CatalogStore
from worker.tasks import register_tasks


class WorkerContext:
    """What the tasks of one app share: the settings and, per process, one store (one Redis client)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._store: CatalogStore | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def store(self) -> CatalogStore:
        if self._store is None:
            self._store = CatalogStore(self.settings)
        return self._store


def worker_config(settings: Settings) -> dict[str, Any]:
    """The shared Celery configuration plus what only workers and beat need."""
    return {
        **celery_config(settings),
        # kombu's Redis transport with the fixes a worker needs to survive a Redis restart and
        # any message (see worker/broker_transport.py), and a consumer that rejects, with the
        # reason, what it cannot run (worker/bad_messages.py).
        "broker_transport": TRANSPORT,
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

    def __init__(self, context: WorkerContext) -> None:
        self._context = context
        self._config: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._config is None:
            self._config = worker_config(self._context.settings)
        return self._config

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app for the workers. Without ``settings`` they are read from the environment
    when Celery first needs its configuration, not when this function runs."""
    context = WorkerContext(settings)
    app = Celery("catalog-ingest", set_as_current=False)
    app.config_from_object(LazyConfig(context))
    register_tasks(app, context)
    bad_messages.install(app, context)
    return app
