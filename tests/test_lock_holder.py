"""The catalog lock's holder record and `catalog lock`, against a real redis-server."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest
import redis

from catalog_core.redis_client import LOCK_WAIT_STEP
from catalog_core.settings import Settings
from tests.conftest import CliRunner
from worker.lock import catalog_lock, existing_lock_name, lock_name
from worker.lock_info import read_lock


def test_a_writer_holding_the_lock_is_named_with_host_pid_and_since_by_the_lock_itself(
        redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    path = tmp_path / "products.json"
    before = time.time()
    with catalog_lock(client, path, expire=10, timeout=5) as held:
        view = read_lock(client, held.name)
        assert view.held
        assert view.holder is not None, "the lock's value must be the holder record"
        assert view.holder["host"] == socket.gethostname()
        assert view.holder["pid"] == os.getpid()
        assert before <= view.holder["since"] <= time.time()
        assert view.ttl is not None and 0 < view.ttl <= 10
        assert view.stuck(10) is None
        assert client.keys(f"*{held.name}*") == [f"lock:{held.name}".encode()]  # nothing beside the lock
    after = read_lock(client, lock_name(path))
    assert not after.held and after.holder is None


def test_two_acquisitions_of_one_process_have_different_lock_values(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    values = []
    for _ in range(2):
        with catalog_lock(client, tmp_path / "products.json", expire=10, timeout=5) as held:
            values.append(client.get(f"lock:{held.name}"))
    assert values[0] != values[1]


def test_a_writer_that_waited_for_the_lock_says_since_when_it_has_it_within_one_wait_step(
        redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    path = tmp_path / "products.json"
    taken = threading.Event()
    seen: list[float] = []

    def second_writer() -> None:
        with catalog_lock(client, path, expire=10, timeout=10) as held:
            holder = read_lock(client, held.name).holder
            seen.append(holder["since"] if holder else -1.0)

    with catalog_lock(client, path, expire=10, timeout=5):
        waiter = threading.Thread(target=second_writer)
        waiter.start()
        time.sleep(2.5)  # the second writer waits through two steps of LOCK_WAIT_STEP
        released = time.time()
    waiter.join(10)
    assert seen and released - LOCK_WAIT_STEP - 0.5 <= seen[0] <= time.time()


def test_the_auto_renewal_keeps_the_lock_and_its_holder_record_alive(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with catalog_lock(client, tmp_path / "products.json", expire=2, timeout=5) as held:
        time.sleep(3.5)  # past the first expiry: only renewal keeps it
        view = read_lock(client, held.name)
        assert view.held and view.holder is not None


def test_readers_never_create_the_catalog_id(tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    existing_lock_name(path)
    assert not (tmp_path / "products.json.id").exists()
    written = lock_name(path)  # a writer creates the id; readers then find the writers' name
    assert existing_lock_name(path) == written


def test_a_lock_set_by_hand_with_a_long_expiry_is_stuck_and_one_without_expiry_too(redis_url: str,
                                                                                    tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    name = lock_name(tmp_path / "products.json")
    client.set(f"lock:{name}", "by-hand", ex=300)
    view = read_lock(client, name)
    assert view.held and view.holder is None
    assert "more than the lock expiry" in (view.stuck(30) or "")
    client.persist(f"lock:{name}")
    assert "no expiry" in (read_lock(client, name).stuck(30) or "")


def test_a_holder_older_than_the_lock_expiry_is_stuck(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    name = lock_name(tmp_path / "products.json")
    client.set(f"lock:{name}", orjson.dumps({"id": "abc", "host": "h", "pid": 1, "worker": "w",
                                             "since": time.time() - 100}), ex=20)
    assert "held for 100s" in (read_lock(client, name).stuck(30) or "")
    assert read_lock(client, name).stuck(300) is None


@pytest.mark.parametrize("value", [
    b'{"id": "a", "host": "h", "pid": 1, "worker": "w"}',
    b'{"id": "a", "host": "h", "pid": 1, "worker": "w", "since": "yesterday"}',
    b'{"id": "a", "host": "h", "pid": 1, "worker": "w", "since": 1e300}',
    b'{"id": "a", "host": "h", "pid": 1, "worker": "w", "since": -5}',
    b'{"id": "a", "host": "h", "pid": true, "worker": "w", "since": 1}',
    b'{"id": "a", "host": ["h"], "pid": 1, "worker": "w", "since": 1}',
    b'["not", "a", "record"]', b"\xff\xfe", b'{"id": "' + b"x" * 5000 + b'"}',
])
def test_a_lock_value_that_is_not_a_holder_record_leaves_the_holder_unknown_and_catalog_lock_says_so(
        value: bytes, settings: Settings, run_cli: CliRunner) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    name = lock_name(settings.catalog_path)
    client.set(f"lock:{name}", value, ex=settings.lock_expire)
    assert read_lock(client, name).holder is None
    shown = run_cli("lock")
    assert shown.returncode == 0, shown.stderr
    assert "unknown holder" in shown.stdout and "Traceback" not in shown.stderr


def test_catalog_lock_says_nobody_holds_it_then_names_the_holder(settings: Settings, run_cli: CliRunner) -> None:
    free = run_cli("lock")
    assert free.returncode == 0, free.stderr
    assert "nobody holds" in free.stdout

    client = redis.Redis.from_url(settings.redis_url)
    with catalog_lock(client, settings.catalog_path, expire=settings.lock_expire, timeout=5):
        shown = run_cli("lock")
        as_json = run_cli("lock", "--json")
    assert shown.returncode == 0, shown.stderr
    assert socket.gethostname() in shown.stdout and f"pid {os.getpid()}" in shown.stdout
    assert "left" in shown.stdout
    payload = orjson.loads(as_json.stdout)
    assert payload["held"] is True and payload["holder"]["pid"] == os.getpid()
    assert 0 < payload["ttl_seconds"] <= settings.lock_expire
    assert payload["stuck"] is None


def test_catalog_lock_exits_3_when_redis_does_not_answer(run_cli: CliRunner) -> None:
    down = run_cli("lock", "--redis-url", "redis://127.0.0.1:1/0")
    assert down.returncode == 3
    assert "Traceback" not in down.stderr
