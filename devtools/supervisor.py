"""The one supervisor of child processes, for ``catalog dev``, the chaos suite, the tests and
the benchmarks.

Each child runs in its own session (so a Ctrl-C meant for the parent does not reach it first,
and the whole group, Celery's prefork children included, can be signalled at once), writes to
its own log file, and dies with its parent (``PR_SET_PDEATHSIG``). ``stop_all`` stops the
children in reverse order: SIGTERM (Celery's warm shutdown), a bounded wait, then SIGKILL of
the group, so nothing outlives the supervisor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from catalog_core.errors import ProcessStartError

if TYPE_CHECKING:
    from celery import Celery

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 15.0


def die_with_parent() -> None:
    """``preexec_fn`` for ``Popen``: on Linux, the child gets SIGKILL when its parent dies.

    Without it, a parent killed with SIGKILL would leave its children (in their own sessions)
    running. The signal follows the *thread* that started the child: start children from the
    main thread.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# The same commands docker-compose.yml runs (there as `celery ...`; a test compares them).
WORKER_ARGS = ["-A", "worker", "worker", "--loglevel=INFO"]
BEAT_ARGS = ["-A", "worker", "beat", "--loglevel=INFO"]


def celery_command(*args: str) -> list[str]:
    """``celery ARGS`` with this interpreter."""
    return [sys.executable, "-m", "celery", *args]


def worker_command(hostname: str, *extra: str, concurrency: int | None = None) -> list[str]:
    """One worker process as production runs it: ``concurrency`` batches at once (None: the
    CATALOG_WORKER_THREADS threads its settings say); tests and tools scale by starting more."""
    threads = [] if concurrency is None else [f"--concurrency={concurrency}"]
    return celery_command(*WORKER_ARGS, *threads, f"--hostname={hostname}", *extra)


def beat_command(schedule: Path) -> list[str]:
    return celery_command(*BEAT_ARGS, f"--schedule={schedule}")


@dataclass
class Child:
    """One supervised process (the leader of its own process group), logging to a file."""

    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    def signal_group(self, sig: int) -> None:
        """Signal the whole group: the process and its children (Celery's pool)."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """Die like a crash: SIGKILL to the group, and reap."""
        self.signal_group(signal.SIGKILL)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Warm shutdown (SIGTERM), bounded; then SIGKILL of the group so no child is left behind."""
        if self.alive():
            self.signal_group(signal.SIGCONT)  # a paused child cannot act on SIGTERM
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class Supervisor:
    """Starts children with one environment and one log folder; stops them all on exit."""

    def __init__(self, log_dir: Path, env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.log_dir, self.env, self.cwd = log_dir, dict(env), cwd
        self.children: dict[str, Child] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """Start ``name`` (replacing a dead child of that name); its output goes to ``<log_dir>/<name>.log``."""
        log_path = self.log_dir / f"{name}.log"
        # As the production image sets them (Dockerfile): one malloc arena per pool thread, and a
        # threshold glibc raises after each large free, both keep freed memory.
        child_env = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576", **dict(env or self.env)}
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(command), env=child_env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
            )
        child = Child(name, list(command), log_path, process)
        self.children[name] = child
        return child

    def dead(self) -> list[str]:
        return [name for name, child in self.children.items() if not child.alive()]

    def stop_all(self, grace: float = STOP_GRACE_S) -> None:
        for child in reversed(list(self.children.values())):
            child.stop(grace)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop_all()


def wait_for_workers(app: Celery, workers: Mapping[str, Child], timeout: float) -> None:
    """Ping until every worker answers; ``workers`` maps node names (before the ``@``) to processes.

    A worker that exits meanwhile, or silence past ``timeout``, raises ``ProcessStartError``
    naming the log to read.
    """
    missing = set(workers)
    deadline = time.monotonic() + timeout
    while missing:
        for node, child in workers.items():
            if not child.alive():
                raise ProcessStartError(f"{child.name} exited at start (code {child.returncode}); "
                                        f"see {child.log_path}:\n{child.tail(2000)}")
        if time.monotonic() > deadline:
            raise ProcessStartError(f"{', '.join(sorted(missing))} did not answer within {timeout:g}s; "
                                    f"see {', '.join(str(workers[n].log_path) for n in sorted(missing))}")
        replies = app.control.ping(timeout=0.5) or []
        missing -= {name.split("@", 1)[0] for reply in replies for name in reply}
