"""Running chaos: a real Redis (AOF), real workers and producers under the one supervisor, and
faults injected on a seeded schedule (devtools/chaos/faults.py)."""

from __future__ import annotations

import gzip
import json
import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from catalog_core.rejections import find_rejection
from catalog_core.settings import Settings, load_settings
from catalog_core.events import read_events
from devtools.chaos.check import ChaosReport, check_run
from devtools.chaos.events_check import check_events
from schemas.events import ChangeEvent
from devtools.chaos.faults import Pauses, kill_redis_inside_commit, push_malformed, wipe
from devtools.chaos.plan import ChaosPlan, make_plan
from devtools.redis_server import RedisServer
from devtools.supervisor import Supervisor, worker_command
from worker.catalog_file import read_catalog, serialize_catalog
from worker.state import read_state, state_path

# Short timeouts, so that a killed worker's batch comes back within seconds.
CHAOS_SETTINGS: dict[str, Any] = {
    "lock_expire": 2, "lock_timeout": 3, "task_time_limit": 10, "visibility_timeout": 13, "restore_interval": 1,
    "max_retries": 6, "retry_backoff_max": 2,
}
CHAOS_QUEUE = str(Settings.model_fields["queue"].default)  # the runner sets no CATALOG_QUEUE
MALFORMED_WAIT_S = 30.0


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


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=2)


def _ledger_ids(catalog: Path) -> set[str]:
    try:
        state = read_state(state_path(catalog))
    except Exception:  # noqa: BLE001 - a state file mid-replace is read again next time
        return set()
    return set(state.ledger) if state else set()


class FaultSchedule:
    """Each kind of fault at seeded, random intervals, until its count is reached."""

    def __init__(self, rng: random.Random, started: float) -> None:
        self.rng = rng
        # The first of each kind early, while batches are still flowing (a short run is over in seconds).
        self.due = {"kill": started + rng.uniform(1.0, 3.0), "restart": started + rng.uniform(0.5, 2.0),
                    "wipe": started + rng.uniform(1.5, 3.5), "pause": started + rng.uniform(0.5, 2.0),
                    "malformed": started + rng.uniform(0.3, 1.0)}
        self.gaps = {"kill": (1.0, 3.0), "restart": (3.0, 6.0), "wipe": (6.0, 10.0), "pause": (2.0, 5.0),
                     "malformed": (0.5, 3.0)}

    def ready(self, kind: str, done: int, limit: int) -> bool:
        return done < limit and time.monotonic() >= self.due[kind]

    def next(self, kind: str) -> None:
        self.due[kind] = time.monotonic() + self.rng.uniform(*self.gaps[kind])


class ChaosRun:
    """One run: the processes, the faults, and what was seen."""

    def __init__(self, options: ChaosOptions, say: Callable[[str], Any]) -> None:
        self.options, self.say = options, say
        self.rng = random.Random(options.seed)
        self.plan: ChaosPlan = make_plan(options.seed, options.batches, options.producers)
        self.catalog = options.workdir / "catalog" / "products.json"
        self.report = ChaosReport(batches=options.batches)
        self.malformed_ids: list[str] = []  # pushed since the last wipe: each must be in `catalog rejected`
        self.stream: list[ChangeEvent] | None = None  # the change stream at the end of the run

    def every_fault_fired(self) -> bool:
        """Each kind of fault asked for happened at least once: a fast run must not skip one."""
        options, report = self.options, self.report
        asked_and_done = [(options.kills, report.kills), (options.redis_restarts, report.redis_restarts),
                          (options.redis_wipes, report.redis_wipes), (options.pauses, report.pauses),
                          (options.malformed, report.malformed)]
        return all(done >= 1 for asked, done in asked_and_done if asked)

    def start_worker(self, supervisor: Supervisor, n: int) -> None:
        # Eight threads: batches share commits (worker/group_commit.py), and a worker holds
        # batches while its consumer waits on the queue, the state in which a broker restart
        # used to stop workers (worker/broker_transport.py).
        supervisor.start(f"worker-{n}", worker_command(f"chaos{n}@%h", "--without-mingle", "--without-gossip",
                                                       concurrency=8))

    def inject(self, schedule: FaultSchedule, supervisor: Supervisor, server: RedisServer, pauses: Pauses,
               lock_expire: float, started: float) -> None:
        options, report, rng = self.options, self.report, self.rng
        at = f"  {time.monotonic() - started:5.1f}s"
        if schedule.ready("kill", report.kills, options.kills):
            victim = rng.randrange(options.workers)
            supervisor.children[f"worker-{victim}"].kill()
            self.start_worker(supervisor, victim)
            report.kills += 1
            self.say(f"{at} kill -9 worker {victim} (and restart it)")
            schedule.next("kill")
        if schedule.ready("restart", report.redis_restarts, options.redis_restarts):
            inside = kill_redis_inside_commit(server, self.catalog)
            report.commit_kills += inside
            time.sleep(rng.uniform(0.5, 1.5))
            server.start()
            report.redis_restarts += 1
            self.say(f"{at} kill -9 Redis{' inside a commit' if inside else ''}, restarted from its AOF")
            schedule.next("restart")
        if schedule.ready("wipe", report.redis_wipes, options.redis_wipes):
            wipe(server)
            time.sleep(rng.uniform(0.5, 1.5))
            server.start()
            report.redis_wipes += 1
            self.malformed_ids.clear()  # their records went with the data
            self.say(f"{at} kill -9 Redis and restart it EMPTY (no persistence)")
            schedule.next("wipe")
        if schedule.ready("pause", report.pauses, options.pauses):
            victim = rng.randrange(options.workers)
            seconds = lock_expire + rng.uniform(0.5, 2.0)
            pauses.pause(supervisor.children[f"worker-{victim}"].process, seconds)
            report.pauses += 1
            self.say(f"{at} SIGSTOP worker {victim} for {seconds:.1f}s (past the lock expiry)")
            schedule.next("pause")
        if schedule.ready("malformed", report.malformed, options.malformed):
            try:
                self.malformed_ids.append(push_malformed(_client(server), CHAOS_QUEUE, rng))
                report.malformed += 1
            except redis.RedisError:
                pass  # Redis is restarting: next time
            schedule.next("malformed")

    def run(self) -> ChaosReport:
        options, report, workdir = self.options, self.report, self.options.workdir
        self.catalog.parent.mkdir(parents=True, exist_ok=True)
        self.catalog.write_bytes(serialize_catalog(self.plan.initial))
        plan_path = workdir / "plan.json"
        plan_path.write_text(json.dumps(self.plan.as_dict()))
        expected = {b.batch_id for b in self.plan.batches if b.kind != "refused"}
        with ExitStack() as stack:
            server = RedisServer(workdir / "redis", appendonly=True, appendfsync="always").start()
            stack.callback(server.stop)
            settings = load_settings(path=self.catalog, redis_url=server.url, **CHAOS_SETTINGS)
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}, **settings.to_env()}
            supervisor = stack.enter_context(Supervisor(workdir / "logs", env))
            pauses = Pauses()
            stack.callback(pauses.resume_due, True)  # before the supervisor stops them (LIFO)
            for n in range(options.workers):
                self.start_worker(supervisor, n)
            producers = [supervisor.start(f"producer-{n}", [sys.executable, "-m", "devtools.chaos.producer",
                                                            str(plan_path), str(n), str(workdir / f"producer-{n}.json")])
                         for n in range(options.producers)]
            self.say(f"chaos seed {options.seed}: {options.batches} batches, {options.producers} producers, "
                     f"{options.workers} workers, Redis {server.url}, folder {workdir}")
            started = time.monotonic()
            schedule = FaultSchedule(self.rng, started)
            while time.monotonic() < started + options.timeout:
                pauses.resume_due()
                if (not any(p.alive() for p in producers) and expected <= _ledger_ids(self.catalog)
                        and self.every_fault_fired()):
                    break
                dead = [name for name in supervisor.dead() if name.startswith("worker")]
                if dead:
                    report.problems.append(f"{', '.join(dead)} exited on their own; see {workdir / 'logs'}")
                    break
                self.inject(schedule, supervisor, server, pauses, float(settings.lock_expire), started)
                time.sleep(0.1)
            else:
                report.problems.append(f"not finished after {options.timeout:g}s "
                                       f"({len(expected - _ledger_ids(self.catalog))} batches without an outcome)")
            pauses.resume_due(everyone=True)
            # The batches may all be done while a malformed message still waits in the queue.
            missing = self._malformed_not_rejected(server, wait=MALFORMED_WAIT_S)
            report.problems.extend(f"malformed message {task_id} is not in `catalog rejected`" for task_id in missing)
            for producer in producers:
                if producer.alive():
                    producer.kill()
                if producer.returncode:
                    tail = producer.tail(300).strip().splitlines()[-1:]
                    report.problems.append(f"{producer.name} exited with {producer.returncode}: {' '.join(tail)}")
            supervisor.stop_all(grace=5)
            self.stream = self._change_stream(server)
            self.say(f"  finished in {time.monotonic() - started:.1f}s")
        return self.judge()

    def _malformed_not_rejected(self, server: RedisServer, wait: float) -> list[str]:
        deadline = time.monotonic() + wait
        while True:
            try:
                missing = [t for t in self.malformed_ids if find_rejection(_client(server), CHAOS_QUEUE, t) is None]
            except redis.RedisError:
                missing = list(self.malformed_ids)
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)

    def _change_stream(self, server: RedisServer) -> list[ChangeEvent] | None:
        """The events the stream holds at the end (None: Redis did not answer)."""
        try:
            return [event for _, event in read_events(_client(server), CHAOS_QUEUE) if event is not None]
        except redis.RedisError as exc:
            self.report.problems.append(f"could not read the change stream: {exc}")
            return None

    def judge(self) -> ChaosReport:
        submissions: dict[str, list[str]] = {}
        for n in range(self.options.producers):
            path = self.options.workdir / f"producer-{n}.json"
            if path.exists():
                submissions.update(json.loads(path.read_text()))
        state = read_state(state_path(self.catalog))
        if state is None:
            self.report.problems.append("no state file: nothing was ever committed")
            return self.report
        catalog = read_catalog(self.catalog)
        if self.stream is not None:
            self.report.problems.extend(check_events(self.stream, state, catalog, self.catalog.parent / "backups",
                                                     _backup_bytes))
        return check_run(self.plan, catalog, state, submissions, self.report)


def _backup_bytes(path: Path) -> bytes:
    """A backup's catalog, also once rotation gzipped it."""
    packed = path.with_name(path.name + ".gz")
    return gzip.decompress(packed.read_bytes()) if not path.exists() and packed.exists() else path.read_bytes()


def run_chaos(options: ChaosOptions, say: Callable[[str], Any] = print) -> ChaosReport:
    return ChaosRun(options, say).run()
