"""Where the metrics live in Redis, and the one count a producer makes: a batch found lost.

Workers count outcomes and commits (worker/metrics.py) and ``catalog metrics`` reads them
(worker/metrics_export.py), but only a producer can tell that a batch it queued is gone: its
message, result and submission record lost with Redis' data (``BatchHandle.state``). So the
key names are here, shared, and producers count ``lost`` batches without importing ``worker/``.
"""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

# Counts a lost batch once per marker: a producer polling a lost batch asks about it many times.
_COUNT_LOST = ("if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then "
               "redis.call('HINCRBY', KEYS[2], 'batches:lost', 1) end return 1")


def counters_key(queue: str) -> str:
    """Hash: ``batches:<outcome>``, ``records:<change>``, ``superseded_fields`` -> count."""
    return f"{queue}:metrics:counters"


def histogram_key(queue: str, name: str) -> str:
    """Hash: one field per bucket bound (``bucket_field``), plus ``sum`` and ``count``."""
    return f"{queue}:metrics:{name}"


def times_key(queue: str) -> str:
    """Hash: ``last_commit``, ``last_rotation``, ``beat_started`` -> Unix time (seconds, float)."""
    return f"{queue}:metrics:times"


def lost_marker_key(queue: str, batch_id: str) -> str:
    """Set while a lost batch is counted: asking again about it does not count it again."""
    return f"{queue}:metrics:lost:{batch_id}"


def record_lost(client: redis.Redis, queue: str, batch_id: str, remember_s: int) -> None:
    """Count ``batch_id`` as lost, once for ``remember_s`` seconds (a batch's results live as long:
    ``CATALOG_RESULT_EXPIRES``); never raises: the count is for people, the batch's state is the answer."""
    try:
        client.eval(_COUNT_LOST, 2, lost_marker_key(queue, batch_id), counters_key(queue), max(1, remember_s))
    except (redis.RedisError, OSError) as exc:
        log.warning("metrics: could not count batch %s as lost (%s)", batch_id, exc)
