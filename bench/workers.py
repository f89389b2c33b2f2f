"""Real worker processes for the benchmark, started as production starts them, and their memory.

The command comes from the one place that builds it, ``devtools.supervisor.worker_command``:
the benchmark measures whatever pool, concurrency and options the checked-out code runs with.
The raw Celery rate runs the same command line with only the app swapped (``-A bench.noop_app``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from catalog_core.settings import Settings
from devtools.supervisor import Child, Supervisor, wait_for_workers, worker_command
from producers.api import client_app

REPO_ROOT = Path(__file__).resolve().parents[1]
NOOP_APP = "bench.noop_app"
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0


class BenchError(Exception):
    """The benchmark cannot go on: said in one line, with the log to read."""


def command_with_app(command: list[str], app: str) -> list[str]:
    """``command`` with its Celery app (``-A X``, ``--app X`` or ``--app=X``) replaced by ``app``."""
    for index, word in enumerate(command):
        if word in ("-A", "--app") and index + 1 < len(command):
            return [*command[: index + 1], app, *command[index + 2 :]]
        if word.startswith("--app="):
            return [*command[:index], f"--app={app}", *command[index + 1 :]]
    raise BenchError(f"the worker command names no Celery app (-A/--app), so the raw rate cannot use it: {command}")


def child_env(settings: Settings) -> dict[str, str]:
    """This environment without any CATALOG_* of the caller's, plus the settings of the run."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CATALOG_")}
    return {**env, **settings.to_env(), "PYTHONUNBUFFERED": "1"}


@dataclass
class PssSampler:
    """Samples, every ``every`` seconds in a thread, the PSS of each worker's process tree (the
    worker and all its children, summed); keeps each worker's peak.

    PSS counts a page shared by k processes as 1/k in each, so the sum over a tree is what the
    tree really holds, not the RSS sum, which counts the pool's copy-on-write pages twice.
    """

    workers: Mapping[str, Child]
    every: float = 0.05
    peaks: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def tree_pss(self, pid: int) -> int:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for process in family:
            try:
                total += process.memory_full_info().pss
            except psutil.Error:
                pass  # gone between the listing and the reading
        return total

    def sample(self) -> None:
        for name, child in self.workers.items():
            self.peaks[name] = max(self.peaks.get(name, 0), self.tree_pss(child.pid))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if not self._idle.is_set():
                self.sample()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """No samples inside: while another set of workers runs a burst, these are idle, and reading
        their PSS (about 2 ms of CPU per process and sample) would take CPU from the burst."""
        self._idle.set()
        try:
            yield
        finally:
            self._idle.clear()

    def __enter__(self) -> PssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    @property
    def peak_per_worker(self) -> int:
        return max(self.peaks.values(), default=0)


@dataclass
class RunningWorkers:
    children: dict[str, Child]
    memory: PssSampler

    def pause(self) -> None:
        """SIGSTOP every worker's process group, so that a burst can be queued before they drain it."""
        for child in self.children.values():
            child.signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        for child in self.children.values():
            child.signal_group(signal.SIGCONT)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Paused inside, running again on the way out, whatever happened inside."""
        self.pause()
        try:
            yield
        finally:
            self.resume()


@contextmanager
def running_workers(settings: Settings, count: int, tag: str, log_dir: Path,
                    app: str | None = None) -> Iterator[RunningWorkers]:
    """``count`` workers, each started with the project's worker command (``app`` swapped in if
    given), all answering a ping, their memory sampled; all stopped on the way out, Ctrl-C included."""
    with Supervisor(log_dir, child_env(settings), cwd=REPO_ROOT) as supervisor:
        children: dict[str, Child] = {}
        for number in range(1, count + 1):
            node = f"{tag}-{number}"
            command = worker_command(f"{node}@%h")
            if app is not None:
                command = command_with_app(command, app)
            children[node] = supervisor.start(node, command)
        ping_app = client_app(settings, results=False)
        try:
            wait_for_workers(ping_app, children, START_TIMEOUT_S)
            with PssSampler(children) as memory:
                yield RunningWorkers(children, memory)
        finally:
            ping_app.close()
            supervisor.stop_all(STOP_GRACE_S)
