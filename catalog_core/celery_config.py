"""Celery configuration shared by workers and producers, derived from the one settings object.

Producers and workers must agree on serializer, queue and transport options, so both build
their Celery configuration here. Importing this module connects to nothing.
"""

from __future__ import annotations

from typing import Any

from catalog_core.settings import Settings

TASK_INGEST = "catalog.ingest_batch"
TASK_ROTATE = "catalog.rotate_backups"
UNACKED_MUTEX_EXPIRE_S = 10  # the redelivery sweep's mutex (below)


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        # How long a delivered but unacknowledged batch waits before another worker gets it.
        # Redis has no real acks: kombu parks the message in a sorted set and a sweep puts it
        # back after this many seconds. It must exceed the longest batch (task_time_limit).
        "visibility_timeout": settings.visibility_timeout,
        # kombu 5.7 sweeps every interval * throttle seconds (10 * 10 by default): with a
        # throttle of 1 a dead worker's batch comes back within about restore_interval seconds
        # of its visibility timeout instead of up to 100 s later.
        "unacked_restore_interval": settings.restore_interval,
        "unacked_restore_throttle": 1,
        # The sweep holds a Redis mutex while it runs (milliseconds: a few ZRANGE and restores);
        # a worker killed or paused inside it stalls every redelivery until the mutex expires:
        # kombu's default, 300 s, would add five minutes to a dead worker's batches. Two sweeps
        # overlapping after an early expiry restore nothing twice (each restore watches the
        # unacked hash), so the expiry only has to outlast one sweep.
        "unacked_mutex_expire": UNACKED_MUTEX_EXPIRE_S,
        # One list key per queue (no priority sub-queues): the worker's transport can then pop with
        # BRPOPLPUSH into a claim list, so a batch popped just before a crash is never lost
        # (worker/broker_transport.py). Producers share this, so they push to that one key.
        "priority_steps": [0],
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "retry_on_timeout": True,
        "health_check_interval": 10,
    }
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.result_backend,
        "broker_transport_options": transport,
        # The result backend reads its own options; the visibility timeout belongs in both.
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        # JSON only: a pickled message could run arbitrary code in the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Acknowledge after the batch is done, and put it back if the worker process dies, so
        # a crash never loses a batch (at-least-once; applying a batch twice is harmless).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A batch can take seconds: one at a time per process, so others can take the rest.
        "worker_prefetch_multiplier": 1,
        # After a broker reconnect, unacked batches are redelivered anyway: cancel the copies
        # still running rather than apply them twice at once (the write itself is crash-safe).
        # Not the cause of the workers' exits after a Redis restart (issue 7, celery#7185 and
        # #9250 point at it): that crash happens earlier, in kombu's connection.collect()/close(),
        # and is fixed in worker/broker_transport.py; the test restarts Redis with this setting on.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": settings.soft_time_limit,
        "task_track_started": True,
        "result_expires": settings.result_expires,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 10,
        "task_default_queue": settings.queue,
        "task_routes": {"catalog.*": {"queue": settings.queue}},
        "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 2},
        "timezone": "UTC",
        "enable_utc": True,
    }
