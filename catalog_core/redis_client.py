"""Redis connections made on demand (never at import), with timeouts that suit the lock."""

from __future__ import annotations

import redis

from catalog_core.errors import RedisUnavailableError

# A blocking lock wait (BLPOP) lasts at most LOCK_WAIT_STEP seconds; the socket must outlive it.
LOCK_WAIT_STEP = 1
SOCKET_TIMEOUT = 10.0


def connect(url: str) -> redis.Redis:
    """A client for ``url``, checked with PING so that an unreachable server fails here, clearly."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=5, health_check_interval=30
        )
        client.ping()
    except ValueError as exc:
        raise RedisUnavailableError(f"invalid Redis URL {url!r}: {exc}") from None
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {url}: {exc}") from None
    return client
