"""Real `celery worker` / `celery beat` processes against the test's private redis-server.

Import what a test module needs explicitly (``from tests.e2e.worker_fixtures import stack``):
fixtures imported into a test module are found by pytest like its own.

Processes are started by the one supervisor (devtools/supervisor.py), with the commands
``catalog dev`` and docker-compose run: each in its own session so that a test can kill one with
its prefork children at once, logging to a file in ``tmp_path``, and stopped in the fixture's
finalizer (SIGTERM, a bounded wait, then SIGKILL of the group), so nothing outlives its test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from catalog_core.errors import ProcessStartError
from devtools.supervisor import Child, Supervisor, beat_command, wait_for_workers, worker_command
from catalog_core.settings import Settings, load_settings
from producers.api import BatchHandle, BatchState, Producer
from worker.catalog_file import serialize_catalog

REPO_ROOT = Path(__file__).resolve().parents[2]

# Short limits so that redelivery and retries happen within a test, in the required order:
# lock_timeout < task_time_limit < visibility_timeout, retry_backoff_max < visibility_timeout.
# The task's soft time limit (task_time_limit - max(5, task_time_limit // 10), see
# catalog_core/celery_config.py) must also exceed lock_timeout: with task_time_limit 8 it would be
# 3 s, and a batch waiting 3 s for the lock would fail for good instead of being retried
# (see test_worker_lock_wait.py). 11 gives a soft limit of 6 s.
FAST_LIMITS: dict[str, Any] = {
    "lock_expire": 5,
    "lock_timeout": 5,
    "task_time_limit": 11,
    "visibility_timeout": 14,
    "retry_backoff_max": 4,
    "restore_interval": 1,
}

WORKER_START_TIMEOUT_S = 45.0  # a cold Celery start on a busy 2-core machine can take a while
LOG_TAIL_CHARS = 4000
CeleryProcess = Child  # the name tests use for a worker or beat


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``CATALOG_*`` variables that reproduce ``settings`` in a child process."""
    return settings.to_env()


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings_env(settings), "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Stack:
    """Workers, beat and producers for one test, all on the test's Redis and catalog."""

    settings: Settings
    tmp_path: Path
    _supervisor: Supervisor | None = None
    _producer: Producer | None = None

    # --- processes ------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return child_env(self.settings)

    @property
    def supervisor(self) -> Supervisor:
        if self._supervisor is None:
            self._supervisor = Supervisor(self.tmp_path, self.env, cwd=REPO_ROOT)
        return self._supervisor

    @property
    def processes(self) -> list[CeleryProcess]:
        return list(self.supervisor.children.values())

    def _spawn(self, name: str, command: list[str]) -> CeleryProcess:
        return self.supervisor.start(name, command)

    def start_worker(self, n: int, pool: str = "prefork", wait: bool = True) -> CeleryProcess:
        """Start worker ``w{n}`` (concurrency 1) and, by default, wait until it answers a ping."""
        command = worker_command(f"w{n}@%h", f"--pool={pool}", concurrency=1)
        worker = self._spawn(f"w{n}", command)
        if wait:
            self.wait_for_workers([worker])
        return worker

    def start_workers(self, count: int, pool: str = "prefork") -> list[CeleryProcess]:
        """Start ``count`` workers at once, then wait for all of them to answer."""
        workers = [self.start_worker(n, pool, wait=False) for n in range(1, count + 1)]
        self.wait_for_workers(workers)
        return workers

    def start_beat(self) -> CeleryProcess:
        return self._spawn("beat", beat_command(self.tmp_path / "beat-schedule"))

    def wait_for_workers(self, workers: list[CeleryProcess], timeout: float = WORKER_START_TIMEOUT_S) -> None:
        """Ping (as ``catalog dev`` does) until every one of ``workers`` has answered."""
        try:
            wait_for_workers(self.producer.app, {w.name: w for w in workers}, timeout)
        except ProcessStartError as exc:
            self.fail(str(exc))

    def stop_all(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop_all()

    # --- producers and results ------------------------------------------------------

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.settings)
        return self._producer

    def wait(self, handle: BatchHandle, timeout: float = 40) -> BatchState:
        """The batch's final state; fails with the process logs if it has none in time."""
        deadline = time.monotonic() + timeout
        state = handle.state()
        while not state.final and time.monotonic() < deadline:
            time.sleep(0.1)
            state = handle.state()
        if not state.final:
            self.fail(f"batch {handle.batch_id} still {state.state} after {timeout:g}s")
        return state

    def wait_all(self, handles: list[BatchHandle], timeout: float) -> dict[str, BatchState]:
        deadline = time.monotonic() + timeout
        states: dict[str, BatchState] = {}
        while True:
            for handle in handles:
                if handle.batch_id not in states or not states[handle.batch_id].final:
                    states[handle.batch_id] = handle.state()
            pending = [s for s in states.values() if not s.final]
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if pending:
            self.fail(f"{len(pending)} of {len(handles)} batches not final after {timeout:g}s, e.g. "
                      f"{pending[0].batch_id} is {pending[0].state}")
        return states

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url)

    def cli(self, *args: str, timeout: float = 90, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run the real ``catalog`` command against this stack's Redis and catalog."""
        return subprocess.run(
            [sys.executable, "-m", "catalog_cli", *args], capture_output=True, text=True, timeout=timeout,
            env={**self.env, **(env or {})}, cwd=REPO_ROOT,
        )

    # --- the catalog ----------------------------------------------------------------

    def seed(self, products: list[dict[str, Any]]) -> bytes:
        """Write a catalog directly (no backup is taken); returns its bytes."""
        data = serialize_catalog(products)
        self.settings.catalog_path.parent.mkdir(parents=True, exist_ok=True)
        self.settings.catalog_path.write_bytes(data)
        return data

    def catalog(self) -> dict[str, dict[str, Any]]:
        path = self.settings.catalog_path
        if not path.exists():
            return {}
        return {p["product_id"]: p for p in orjson.loads(path.read_bytes())}

    # --- diagnostics ----------------------------------------------------------------

    def logs(self, chars: int = LOG_TAIL_CHARS) -> str:
        parts = []
        for process in self.processes:
            state = "running" if process.alive() else f"exited {process.returncode}"
            parts.append(f"----- {process.name} ({state}), last {chars} chars of {process.log_path} -----\n"
                         f"{process.tail(chars)}")
        return "\n".join(parts) or "(no worker or beat was started)"

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n{self.logs()}", pytrace=False)


def _report_logs(request: pytest.FixtureRequest, stack: Stack) -> None:
    """Show the process logs on the terminal when the test failed (teardown output is not shown)."""
    reporter: Any = request.config.pluginmanager.get_plugin("terminalreporter")
    text = f"process logs of {request.node.nodeid}:\n{stack.logs()}"
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(text)
    else:
        print(text, file=sys.stderr)


def make_settings(tmp_path: Path, redis_url: str, **overrides: Any) -> Settings:
    return load_settings(path=tmp_path / "catalog" / "products.json", redis_url=redis_url,
                         **{**FAST_LIMITS, **overrides})


StackFactory = Callable[..., Stack]


@pytest.fixture
def stack_factory(tmp_path: Path, redis_url: str, request: pytest.FixtureRequest) -> Iterator[StackFactory]:
    """Build the test's stack with extra settings (``stack_factory(rotate_every=1)``); stopped at teardown."""
    stacks: list[Stack] = []
    failed_before = request.session.testsfailed

    def build(**overrides: Any) -> Stack:
        built = Stack(make_settings(tmp_path, redis_url, **overrides), tmp_path)
        stacks.append(built)
        return built

    try:
        yield build
    finally:
        for built in stacks:
            built.stop_all()
        if request.session.testsfailed > failed_before:
            for built in stacks:
                _report_logs(request, built)


@pytest.fixture
def stack(stack_factory: StackFactory) -> Stack:
    """A stack with the short limits of ``FAST_LIMITS``; no process is started until asked."""
    return stack_factory()
