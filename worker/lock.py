"""The catalog write lock: python-redis-lock, used around its known traps.

python-redis-lock 4.0.1 pitfalls this module works around:
- a lock that expires sends no wake-up signal, so a long blocking ``acquire`` sleeps through
  it: we acquire in short steps (``LOCK_WAIT_STEP``) until our own deadline;
- ``acquire`` truncates its timeout to whole seconds: our steps are whole seconds;
- the auto-renewal thread dies silently on a Redis error: before replacing the catalog we
  extend the lock ourselves, which both proves we still own it and buys a fresh expiry;
- a ``Lock`` object can be acquired once: each acquisition builds a new one. ``acquire`` first
  asks Redis (a GET) whether the object already holds the lock; ours never do before they
  acquire (a fresh random id each), so our subclass answers that from what it knows, and a
  commit saves the round trip;
- ``register_scripts`` sets the Lua scripts on the class it is called on, behind a global
  guard: called first on a subclass, it leaves ``redis_lock.Lock`` itself without scripts for
  the rest of the process (its ``release`` then fails with "'NoneType' object is not
  callable"). Our subclass registers them on the base class.

The lock's value (python-redis-lock's ``id``, any string unique to one acquisition) is the
**holder record**: JSON ``{id, host, pid, worker, since}``, ``id`` the random part. `catalog
lock`, health and the metrics read it (worker/lock_info.py). Being the lock's own value, it is
set, renewed and removed with the lock, by the same commands: a separate key cost two Redis
round trips a commit (a tenth of a 100-record commit at 1,000 products) and could outlive or
misname its holder.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import redis
import redis_lock

from catalog_core.errors import LockBusyError, LockLostError, LockTimeoutError, RedisUnavailableError
from catalog_core.redis_client import LOCK_WAIT_STEP
from worker.catalog_id import ensure_catalog_id, read_catalog_id

log = logging.getLogger(__name__)
# python-redis-lock logs every acquisition at INFO and every lock found held by a non-blocking
# attempt at WARNING: both routine here (a commit each; staging asks without waiting). Our own
# lines say what matters (worker/group_commit.py, `catalog lock`).
logging.getLogger("redis_lock.acquire").setLevel(logging.ERROR)

# Who this process is, for the holder record (`catalog lock`): the Celery node name in workers
# (set by worker/app.py when the worker starts, inherited by its prefork children), else the program.
holder_name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


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


def existing_lock_name(catalog: Path) -> str:
    """``lock_name`` for readers (`catalog lock`, health, metrics): never creates the catalog id."""
    catalog_id = read_catalog_id(catalog)
    return path_lock_name(catalog) if catalog_id is None else f"catalog-ingest:{catalog.name}:{catalog_id}"


def redis_key(name: str) -> str:
    """The Redis key python-redis-lock keeps the lock in (``Lock._name``): its random id, with an expiry."""
    return f"lock:{name}"


def path_lock_name(catalog: Path) -> str:
    """The fallback: named by the resolved path, so only writers that reach it by that path share it."""
    digest = hashlib.sha256(str(catalog.resolve()).encode()).hexdigest()[:16]
    return f"catalog-ingest:{catalog.resolve().name}:{digest}"


class _Lock(redis_lock.Lock):
    """python-redis-lock's lock, its value the holder record (``holder_record``)."""

    @classmethod
    def register_scripts(cls, redis_client: redis.Redis) -> None:
        redis_lock.Lock.register_scripts(redis_client)  # on the base class: see the module's docstring

    @property
    def _held(self) -> bool:
        """Asked by ``acquire`` only (see the module's docstring): an acquisition that succeeds
        starts the renewal thread (``auto_renewal=True``), so this object holds the lock once it has one."""
        return self._lock_renewal_thread is not None


@functools.cache
def _host() -> str:
    return socket.gethostname()


def holder_record() -> str:
    """A new lock value: who takes the lock (host, pid, Celery node or program) and when they
    began to try, with a random id that makes it this acquisition's alone."""
    record = {"id": secrets.token_urlsafe(18), "host": _host(), "pid": os.getpid(), "worker": holder_name,
              "since": time.time()}
    return orjson.dumps(record).decode()


class HeldLock:
    """A lock we hold; ``ensure_held`` must pass right before the catalog is replaced."""

    def __init__(self, lock: redis_lock.Lock, expire: int, name: str) -> None:
        self._lock = lock
        self._expire = expire
        self.name = name  # the lock_name it was taken by: derive the fence key from this, read once

    def ensure_held(self) -> None:
        """Raise ``LockLostError`` unless the lock is still ours; renew it for a full expiry if so.

        One round trip before each commit point (the holder record is the lock's value: it is
        extended with it)."""
        try:
            self._lock.extend(self._expire)
        except redis_lock.NotAcquired:
            raise LockLostError("the catalog lock expired or was taken by another writer; write abandoned") from None
        except redis.RedisError as exc:
            raise LockLostError(f"cannot confirm the catalog lock ({exc}); write abandoned") from None


@contextmanager
def catalog_lock(client: redis.Redis, catalog: Path, expire: int, timeout: float,
                 wait: bool = True) -> Iterator[HeldLock]:
    """Hold the catalog's write lock, auto-renewed, waiting at most ``timeout`` seconds for it;
    ``wait=False``: only if it is free now, else ``LockBusyError``."""
    name = lock_name(catalog)
    lock = _Lock(client, name, expire=expire, auto_renewal=True, id=holder_record())
    deadline = time.monotonic() + timeout
    try:
        acquired = not wait and lock.acquire(blocking=False)
        if not wait and not acquired:
            raise LockBusyError(f"another writer holds the lock on {catalog}")
        while not acquired:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(
                    f"another writer held the lock on {catalog} for over {timeout:g}s (CATALOG_LOCK_TIMEOUT)"
                )
            step = max(1, min(LOCK_WAIT_STEP, int(remaining)))
            lock._id = holder_record()  # "since" is then at most one step before the lock was taken
            acquired = lock.acquire(blocking=True, timeout=step)
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
