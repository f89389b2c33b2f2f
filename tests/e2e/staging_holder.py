"""A lock holder that dies with other workers' staged batches in hand (test harness only).

    python -m tests.e2e.staging_holder after-take|before-answer STAGED

With the settings of ``CATALOG_*``, it takes the catalog lock, prints ``holding``, waits until
STAGED batches are staged for it, and commits one batch of its own through the real group
committer, as a worker that holds the lock does: taking the staged batches with it. It kills
itself (SIGKILL) right after taking them (``after-take``: nothing of them committed) or right
before answering them (``before-answer``: committed, unanswered). Its lock is left to expire,
as a dead worker's is.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from catalog_core.sequence import next_sequence
from tests.e2e.named_point import at_point
from tests.helpers import product
from worker import store as store_module
from worker.app import WorkerContext, settings_from_environment
from worker.lock import HeldLock, catalog_lock, lock_name
from worker.staging import staging_key

WAIT_S = 60.0


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(mode: str, staged: int) -> None:
    context = WorkerContext(settings_from_environment())
    store, settings = context.store, context.settings
    key = staging_key(lock_name(settings.catalog_path))
    with catalog_lock(store.redis, settings.catalog_path, settings.lock_expire, settings.lock_timeout) as held:
        print("holding", flush=True)
        deadline = time.monotonic() + WAIT_S
        while store.redis.llen(key) < staged:
            if time.monotonic() > deadline:
                sys.exit(f"only {store.redis.llen(key)} of {staged} batches were staged in {WAIT_S:g}s")
            time.sleep(0.02)

        @contextmanager
        def the_lock_held(*args: Any, **kwargs: Any) -> Iterator[HeldLock]:
            yield held  # the commit that follows runs under this very lock

        store_module.catalog_lock = the_lock_held  # type: ignore[assignment]
        if mode == "after-take":
            at_point("worker.staging", "pop_entries", "after", die)
        else:
            at_point("worker.staging", "push_answers", "before", die)
        own = store.request([product("HOLDER")], "holder-own", next_sequence(store.redis, settings.queue))
        context.committer.apply(own)
    sys.exit("the holder was meant to die inside its commit")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
