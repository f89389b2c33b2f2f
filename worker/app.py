"""Building the Celery app from the settings. Configuration is loaded lazily, on Celery's first need."""

from __future__ import annotations

from typing import Any

from celery import Celery

from catalog_core.celery_config import TASK_ROTATE, celery_config
from catalog_core.settings import Settings, load_settings
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


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app for the workers. Without ``settings`` they are read from the environment
    when Celery first needs its configuration, not when this function runs."""
    context = WorkerContext(settings)
    app = Celery("catalog-ingest", set_as_current=False)

    def configure(sender: Celery, **_: Any) -> None:
        sender.conf.update(worker_config(context.settings))

    app.on_configure.connect(configure, weak=False)
    register_tasks(app, context)
    return app
