"""The real worker app, which kills itself (SIGKILL) at a named point of the write path.

    TEST_DIE_AT=MODULE:FUNCTION:before|after:N celery -A tests.e2e.dying_worker worker ...

Test harness only: a deterministic kill -9 between two steps, on the N-th call of FUNCTION in
this process (threads included), for tests of what a crash leaves behind.
"""

from __future__ import annotations

import os
import signal
import threading

from tests.e2e.named_point import at_point
from worker.app import create_app


def die_at(spec: str) -> None:
    module_name, function, when, nth = spec.split(":")
    calls = [0]
    counting = threading.Lock()

    def maybe_die() -> None:
        with counting:
            calls[0] += 1
            if calls[0] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)

    at_point(module_name, function, when, maybe_die)


if os.environ.get("TEST_DIE_AT"):
    die_at(os.environ["TEST_DIE_AT"])
app = create_app(exit_on_bad_settings=True)
