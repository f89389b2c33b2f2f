"""The catalog write lock: python-redis-lock, used around its known traps.

python-redis-lock 4.0.1 pitfalls this module works around:
- a lock that expires sends no wake-up signal, so a long blocking ``acquire`` sleeps through
  it: we acquire in short steps (``LOCK_WAIT_STEP``) until our own deadline;
- ``acquire`` truncates its timeout to whole seconds: our steps are whole seconds;
- the auto-renewal thread dies silently on a Redis error: before replacing the catalog we
  extend the lock ourselves, which both proves we still own it and buys a fresh expiry;
- a ``Lock`` object can be acquired once: each acquisition builds a new one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import redis_lock

from catalog_core.errors import LockLostError, LockTimeoutError, RedisUnavailableError
from catalog_core.redis_client import LOCK_WAIT_STEP
from worker.catalog_id import ensure_catalog_id

log = logging.getLogger(__name__)


def lock_name(catalog: Path) -> str:
    """The one name every writer (store, apply, restore) locks the catalog by; the fence key derives from it.

    It comes from the catalog's id (worker/catalog_id.py), so hosts that mount the folder at
    different paths share it. Only where the folder cannot take the id file is the name derived
    from the path, as before ids existed.
    """
    catalog_id = ensure_catalog_id(catalog)
    if catalog_id is None:
        return path_lock_name(catalog)
    return f"catalog-ingest:{catalog.name}:{catalog_id}"


def path_lock_name(catalog: Path) -> str:
    """The fallback: named by the resolved path, so only writers that reach it by that path share it."""
    digest = hashlib.sha256(str(catalog.resolve()).encode()).hexdigest()[:16]
    return f"catalog-ingest:{catalog.resolve().name}:{digest}"


class HeldLock:
    """A lock we hold; ``ensure_held`` must pass right before the catalog is replaced."""

    def __init__(self, lock: redis_lock.Lock, expire: int, name: str) -> None:
        self._lock = lock
        self._expire = expire
        self.name = name  # the lock_name it was taken by: derive the fence key from this, read once

    def ensure_held(self) -> None:
        """Raise ``LockLostError`` unless the lock is still ours; renew it for a full expiry if so."""
        try:
            self._lock.extend(self._expire)
        except redis_lock.NotAcquired:
            raise LockLostError("the catalog lock expired or was taken by another writer; write abandoned") from None
        except redis.RedisError as exc:
            raise LockLostError(f"cannot confirm the catalog lock ({exc}); write abandoned") from None


@contextmanager
def catalog_lock(client: redis.Redis, catalog: Path, expire: int, timeout: float) -> Iterator[HeldLock]:
    """Hold the catalog's write lock, auto-renewed, waiting at most ``timeout`` seconds for it."""
    name = lock_name(catalog)
    lock = redis_lock.Lock(client, name, expire=expire, auto_renewal=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(
                    f"another writer held the lock on {catalog} for over {timeout:g}s (CATALOG_LOCK_TIMEOUT)"
                )
            step = max(1, min(LOCK_WAIT_STEP, int(remaining)))
            if lock.acquire(blocking=True, timeout=step):
                break
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"Redis failed while taking the catalog lock: {exc}") from None
    try:
        yield HeldLock(lock, expire, name)
    finally:
        try:
            lock.release()
        except redis_lock.NotAcquired:
            log.warning("the lock on %s had already expired when released", catalog)
        except redis.RedisError as exc:
            log.warning("could not release the lock on %s (%s); it expires in at most %ss", catalog, exc, expire)
