"""The faults a chaos run injects besides killing workers, each seeded and bounded.

- Redis killed while a commit is under way (a state temp file is on disk), restarted from its AOF;
- Redis restarted *empty*, as after a restart without persistence: queue, results and counters
  are gone, and producers must see their batches as ``lost`` and resubmit them;
- a worker paused (SIGSTOP) past the lock's expiry, then resumed inside another writer's window;
- malformed messages pushed straight onto the queue, as anyone with Redis access could.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import redis

from catalog_core.celery_config import TASK_INGEST
from devtools.redis_server import RedisServer

COMMIT_WATCH_S = 3.0  # how long to watch for a commit in progress before killing Redis anyway
REDIS_DATA_FILES = ("appendonly", "dump.rdb")


def commit_in_progress(catalog: Path) -> bool:
    """A state temp file exists: some writer is between its step 6 and its commit rename."""
    prefix = f".{catalog.name}.state."
    try:
        return any(name.startswith(prefix) and name.endswith(".tmp") for name in os.listdir(catalog.parent))
    except FileNotFoundError:
        return False


def kill_redis_inside_commit(server: RedisServer, catalog: Path) -> bool:
    """Kill -9 Redis the moment a commit is seen under way (or after COMMIT_WATCH_S). True if one was."""
    deadline = time.monotonic() + COMMIT_WATCH_S
    caught = False
    while time.monotonic() < deadline:
        if commit_in_progress(catalog):
            caught = True
            break
        time.sleep(0.0005)
    server.kill()
    return caught


def wipe(server: RedisServer) -> None:
    """Kill Redis and delete what it persisted: it comes back empty."""
    server.kill()
    for entry in server.data_dir.iterdir():
        if entry.name.startswith(REDIS_DATA_FILES):
            if entry.is_dir():
                for inner in entry.iterdir():
                    inner.unlink()
                entry.rmdir()
            else:
                entry.unlink()


class Pauses:
    """Workers stopped with SIGSTOP, each resumed (SIGCONT) at its own time."""

    def __init__(self) -> None:
        self._resume_at: dict[int, float] = {}

    def pause(self, process: subprocess.Popen[bytes], seconds: float) -> None:
        """Stop the process group (the worker and its pool) for ``seconds``."""
        try:
            os.killpg(process.pid, signal.SIGSTOP)
        except ProcessLookupError:
            return
        self._resume_at[process.pid] = time.monotonic() + seconds

    def resume_due(self, everyone: bool = False) -> None:
        now = time.monotonic()
        for pid, when in list(self._resume_at.items()):
            if everyone or now >= when:
                try:
                    os.killpg(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                del self._resume_at[pid]


def _envelope(queue: str, task_id: str, body: str) -> bytes:
    """kombu's Redis message layout, as a hand-made message would copy it."""
    return json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": TASK_INGEST, "id": task_id, "root_id": task_id, "parent_id": None,
                    "group": None, "retries": 0, "eta": None, "expires": None},
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
                       "delivery_info": {"exchange": "", "routing_key": queue}},
    }).encode()


def push_malformed(client: redis.Redis, queue: str, rng: random.Random) -> str:
    """Push one malformed message; returns its task id, which must end up in `catalog rejected`."""
    task_id = f"chaos-malformed-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
    kind = rng.choice(["not base64", "not json", "not a task body"])
    if kind == "not base64":
        body = "%%% this is not base64 %%%"
    elif kind == "not json":
        body = base64.b64encode(b"{not json").decode()
    else:
        body = base64.b64encode(json.dumps({"hello": "world"}).encode()).decode()
    client.lpush(queue, _envelope(queue, task_id, body))
    return task_id
