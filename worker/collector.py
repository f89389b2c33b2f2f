"""Python's cyclic garbage collector, paused while a commit holds the catalog lock.

Why: a commit allocates hundreds of thousands of short-lived containers (decoded products,
validated models, change events), nearly all freed by reference counting as it goes. Python
still runs a young collection every 700 allocations, and now and then a full one that walks the
whole heap (a worker's holds Celery's too), each with the lock held and every other worker
waiting. Measured on a 30-batch group commit of 100-record batches at 10,000 products, the
collector took a fifth of the holder's time. Paused, it runs after the commit, lock released.

The pause is process-wide (``gc.disable``), counted across threads, and never re-enables a
collector that was off before the first pause.

``freeze_startup_objects``: once a worker is ready, what it imported and built to start (modules,
Celery's app and consumer, the schemas' validators) lives as long as the process; moved out of
the collector's reach (``gc.freeze``), each full collection walks only what came after.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_guard = threading.Lock()
_pauses = 0
_resume = False  # whether the collector was on when the first pause began


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside (in any thread); as it was on the way out of the last pause."""
    global _pauses, _resume
    with _guard:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _guard:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


def freeze_startup_objects() -> None:
    """Collect once, then keep every object alive now out of all later collections."""
    gc.collect()
    gc.freeze()
