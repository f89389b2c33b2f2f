"""Who holds the catalog lock, read without taking it: for `catalog lock`, `catalog health` and the metrics.

python-redis-lock keeps the lock as ``lock:<name>`` = its holder's id, with an expiry that its
auto-renewal thread extends. Our writers make that id the holder record (worker/lock.py
``holder_record``): host, pid, worker name and since when. Anything else in the key (a writer
of an older version, a value set by hand, one that is not such a record) leaves the holder
unknown; it is never trusted further than its types.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from worker.lock import redis_key

HOLDER_MAX_BYTES = 4096


@dataclass(frozen=True)
class LockView:
    """The lock as seen at one instant."""

    name: str
    held: bool
    ttl: float | None  # seconds left; None: held without an expiry (never released by time)
    holder: dict[str, Any] | None  # the holder record, when it is the current holder's
    seen_at: float

    @property
    def held_for(self) -> float | None:
        """Seconds since the holder acquired it, when known."""
        since = (self.holder or {}).get("since")
        return max(0.0, self.seen_at - since) if isinstance(since, int | float) else None

    def stuck(self, expire: int) -> str | None:
        """Why the lock looks held past its expiry (``expire`` = CATALOG_LOCK_EXPIRE), or None.

        A healthy writer holds it for one commit, far less than the expiry, and its expiry
        is never above ``expire``. A key without expiry, or with more time left than a writer
        ever sets, was not set by a writer that will release it in time; a holder past the
        expiry is a writer stuck while its renewal thread keeps the lock alive.
        """
        if not self.held:
            return None
        if self.ttl is None:
            return "the lock has no expiry: it is never released unless deleted"
        if self.ttl > expire + 1:
            return f"{self.ttl:.0f}s left, more than the lock expiry of {expire}s: not set by a writer"
        held_for = self.held_for
        if held_for is not None and held_for > expire:
            return f"held for {held_for:.0f}s, longer than the lock expiry of {expire}s"
        return None


LATEST_SINCE = 253402300799.0  # 9999-12-31: a later "since" cannot be shown as a date


def _holder(raw: bytes) -> dict[str, Any] | None:
    """The holder record in a lock's value, or None when it is not one (checked field by field)."""
    if len(raw) > HOLDER_MAX_BYTES:
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    since, pid = record.get("since"), record.get("pid")
    if not all(isinstance(record.get(name), str) for name in ("id", "host", "worker")):
        return None
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    if not isinstance(since, int | float) or isinstance(since, bool):
        return None
    if not 0 <= since <= LATEST_SINCE:
        return None
    return {"id": record["id"], "host": record["host"], "pid": pid, "worker": record["worker"], "since": float(since)}


def read_lock(client: redis.Redis, name: str) -> LockView:
    """The lock ``name`` now (one pipeline). Raises ``redis.RedisError`` when Redis does not answer."""
    with client.pipeline(transaction=False) as pipe:
        pipe.get(redis_key(name))
        pipe.pttl(redis_key(name))
        value, pttl = pipe.execute()
    now = time.time()
    if value is None or pttl == -2:  # -2: released between the GET and the PTTL
        return LockView(name, False, None, None, now)
    ttl = None if pttl is None or pttl < 0 else pttl / 1000
    return LockView(name, True, ttl, _holder(value), now)
