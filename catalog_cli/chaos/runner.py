"""Running chaos: a real Redis (AOF), real workers killed at random, Redis restarted, real producers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import redis

from catalog_core.redis_server import RedisServer
from catalog_core.settings import Settings, load_settings
from catalog_core.processes import die_with_parent
from catalog_cli.chaos.check import ChaosReport, check_run
from catalog_cli.chaos.faults import Pauses, kill_redis_inside_commit, push_malformed, wipe
from catalog_core.rejections import find_rejection
from catalog_cli.chaos.plan import ChaosPlan, make_plan
from catalog_cli.dev import WORKER_ARGS, celery_command
from worker.catalog_file import read_catalog, serialize_catalog
from worker.state import read_state, state_path

# Short timeouts, so that a killed worker's batch comes back within seconds.
CHAOS_SETTINGS: dict[str, Any] = {
    "lock_expire": 2, "lock_timeout": 3, "task_time_limit": 10, "visibility_timeout": 13, "restore_interval": 1,
    "max_retries": 6, "retry_backoff_max": 2,
}


CHAOS_QUEUE = str(Settings.model_fields["queue"].default)  # the runner sets no CATALOG_QUEUE


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=2)


@dataclass
class ChaosOptions:
    seed: int
    batches: int
    producers: int
    workers: int
    kills: int
    redis_restarts: int
    timeout: float
    workdir: Path
    redis_wipes: int = 0
    pauses: int = 0
    malformed: int = 0


class Stack:
    """The processes of one run, each logging to a file in the work folder."""

    def __init__(self, options: ChaosOptions, env: dict[str, str], stack: ExitStack) -> None:
        self.options, self.env, self.stack = options, env, stack
        self.logs = options.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self._files: list[TextIO] = []
        stack.callback(self.stop_all)

    def _log(self, name: str) -> TextIO:
        handle = (self.logs / f"{name}.log").open("a")
        self._files.append(handle)
        return handle

    def start_worker(self, n: int) -> None:
        command = celery_command(*WORKER_ARGS, "--concurrency=1", "--without-mingle", "--without-gossip",
                                 f"--hostname=chaos{n}@%h")
        log = self._log(f"worker-{n}")
        self.workers[n] = subprocess.Popen(command, env=self.env, stdout=log, stderr=log, start_new_session=True,
                                           preexec_fn=die_with_parent)

    def kill_worker(self, n: int) -> None:
        with_suppress_kill(self.workers[n])

    def start_producer(self, plan_path: Path, n: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "catalog_cli.chaos.producer", str(plan_path), str(n),
                   str(self.options.workdir / f"producer-{n}.json")]
        log = self._log(f"producer-{n}")
        return subprocess.Popen(command, env=self.env, stdout=log, stderr=log, start_new_session=True,
                                preexec_fn=die_with_parent)

    def stop_all(self) -> None:
        for process in self.workers.values():
            with_suppress_kill(process)
        for handle in self._files:
            handle.close()


def with_suppress_kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and its pool children (its own session), as a crash would."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(10)


def _ledger_ids(catalog: Path) -> set[str]:
    try:
        state = read_state(state_path(catalog))
    except Exception:  # noqa: BLE001 - a state file mid-replace is read again next time
        return set()
    return set(state.ledger) if state else set()


def run_chaos(options: ChaosOptions, say: Any = print) -> ChaosReport:
    rng = random.Random(options.seed)
    plan: ChaosPlan = make_plan(options.seed, options.batches, options.producers)
    workdir = options.workdir
    catalog = workdir / "catalog" / "products.json"
    catalog.parent.mkdir(parents=True, exist_ok=True)
    catalog.write_bytes(serialize_catalog(plan.initial))
    plan_path = workdir / "plan.json"
    plan_path.write_text(json.dumps(plan.as_dict()))
    expected = {b.batch_id for b in plan.batches if b.kind != "refused"}
    report = ChaosReport(batches=options.batches)

    with ExitStack() as stack:
        redis_server = RedisServer(workdir / "redis", appendonly=True, appendfsync="always").start()
        stack.callback(redis_server.stop)
        settings = load_settings(path=catalog, redis_url=redis_server.url, **CHAOS_SETTINGS)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}, **settings.to_env()}
        processes = Stack(options, env, stack)
        for n in range(options.workers):
            processes.start_worker(n)
        producers = [processes.start_producer(plan_path, n) for n in range(options.producers)]
        say(f"chaos seed {options.seed}: {options.batches} batches, {options.producers} producers, "
            f"{options.workers} workers, Redis {redis_server.url}, folder {workdir}")
        started = time.monotonic()
        deadline = started + options.timeout
        next_kill = started + rng.uniform(1.0, 3.0)
        restart_at = started + rng.uniform(2.0, 5.0)
        wipe_at = started + rng.uniform(4.0, 8.0)
        pause_at = started + rng.uniform(1.0, 4.0)
        malformed_at = started + rng.uniform(0.5, 2.0)
        pauses = Pauses()
        stack.callback(pauses.resume_due, True)
        malformed_ids: list[str] = []  # pushed since the last wipe: each must be in `catalog rejected`
        lock_expire = float(settings.lock_expire)
        while time.monotonic() < deadline:
            pauses.resume_due()
            producing = any(p.poll() is None for p in producers)
            if not producing and expected <= _ledger_ids(catalog):
                break
            dead = [n for n, w in processes.workers.items() if w.poll() is not None]
            if dead:
                report.problems.append(f"worker(s) {dead} exited on their own; see {processes.logs}")
                break
            now = time.monotonic()
            if report.kills < options.kills and now >= next_kill:
                victim = rng.randrange(options.workers)
                processes.kill_worker(victim)
                processes.start_worker(victim)
                report.kills += 1
                say(f"  {now - started:5.1f}s kill -9 worker {victim} (and restart it)")
                next_kill = now + rng.uniform(1.0, 3.0)
            if report.redis_restarts < options.redis_restarts and now >= restart_at:
                inside = kill_redis_inside_commit(redis_server, catalog)
                report.commit_kills += inside
                time.sleep(rng.uniform(0.5, 1.5))
                redis_server.start()
                report.redis_restarts += 1
                say(f"  {now - started:5.1f}s kill -9 Redis{' inside a commit' if inside else ''}, "
                    "restarted from its AOF")
                restart_at = time.monotonic() + rng.uniform(3.0, 6.0)
            if report.redis_wipes < options.redis_wipes and now >= wipe_at:
                wipe(redis_server)
                time.sleep(rng.uniform(0.5, 1.5))
                redis_server.start()
                report.redis_wipes += 1
                malformed_ids.clear()  # their records went with the data
                say(f"  {now - started:5.1f}s kill -9 Redis and restart it EMPTY (no persistence)")
                wipe_at = time.monotonic() + rng.uniform(6.0, 10.0)
            if report.pauses < options.pauses and now >= pause_at:
                victim = rng.randrange(options.workers)
                seconds = lock_expire + rng.uniform(0.5, 2.0)
                pauses.pause(processes.workers[victim], seconds)
                report.pauses += 1
                say(f"  {now - started:5.1f}s SIGSTOP worker {victim} for {seconds:.1f}s (past the lock expiry)")
                pause_at = now + rng.uniform(2.0, 5.0)
            if report.malformed < options.malformed and now >= malformed_at:
                try:
                    malformed_ids.append(push_malformed(_client(redis_server), CHAOS_QUEUE, rng))
                    report.malformed += 1
                except redis.RedisError:
                    pass  # Redis is restarting: next time
                malformed_at = now + rng.uniform(0.5, 3.0)
            time.sleep(0.1)
        else:
            report.problems.append(f"not finished after {options.timeout:g}s "
                                   f"({len(expected - _ledger_ids(catalog))} batches without an outcome)")
        pauses.resume_due(everyone=True)
        for task_id in malformed_ids:
            if find_rejection(_client(redis_server), CHAOS_QUEUE, task_id) is None:
                report.problems.append(f"malformed message {task_id} is not in `catalog rejected`")
        for n, producer in enumerate(producers):
            if producer.poll() is None:
                producer.kill()
                producer.wait(10)
            if producer.returncode:
                tail = (workdir / "logs" / f"producer-{n}.log").read_text(errors="replace").strip().splitlines()[-1:]
                report.problems.append(f"producer {n} exited with {producer.returncode}: {' '.join(tail)}")
        processes.stop_all()
        say(f"  finished in {time.monotonic() - started:.1f}s")

    submissions: dict[str, list[str]] = {}
    for n in range(options.producers):
        path = workdir / f"producer-{n}.json"
        if path.exists():
            submissions.update(json.loads(path.read_text()))
    state = read_state(state_path(catalog))
    if state is None:
        report.problems.append("no state file: nothing was ever committed")
        return report
    return check_run(plan, read_catalog(catalog), state, submissions, report)
