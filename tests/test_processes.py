"""devtools.supervisor: children die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def test_a_child_started_with_die_with_parent_is_killed_when_its_parent_is_killed() -> None:
    # The parent starts a sleeping grandchild in its own session, prints its pid, then waits.
    parent_code = (
        "import subprocess, sys, time\n"
        "from devtools.supervisor import die_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True, preexec_fn=die_with_parent)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(child_pid, signal.SIGKILL)
    raise AssertionError("the child outlived its parent")
