"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for ``Popen``: on Linux, the child gets SIGKILL when its parent dies.

    Workers, beat and Redis started by ``catalog dev``, the chaos suite or the tests run in
    their own session (so a Ctrl-C meant for the parent does not hit them first); without this,
    a parent killed with SIGKILL would leave them running. The signal follows the *thread* that
    started the child: start children from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
