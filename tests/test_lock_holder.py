"""The catalog lock's holder record and `catalog lock`, against a real redis-server."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import orjson
import redis

from catalog_core.settings import Settings
from tests.conftest import CliRunner
from worker.lock import catalog_lock, existing_lock_name, lock_name
from worker.lock_info import read_lock


def test_a_writer_holding_the_lock_is_named_with_host_pid_and_since_and_forgotten_on_release(
        redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    path = tmp_path / "products.json"
    before = time.time()
    with catalog_lock(client, path, expire=10, timeout=5) as held:
        view = read_lock(client, held.name)
        assert view.held
        assert view.holder is not None, "the holder record must be written right after acquiring"
        assert view.holder["host"] == socket.gethostname()
        assert view.holder["pid"] == os.getpid()
        assert before <= view.holder["since"] <= time.time()
        assert view.ttl is not None and 0 < view.ttl <= 10
        assert client.ttl(f"{held.name}:holder") > 0  # it expires with the lock if the holder dies
        assert view.stuck(10) is None
    after = read_lock(client, lock_name(path))
    assert not after.held and after.holder is None
    assert client.exists(f"{lock_name(path)}:holder") == 0


def test_the_auto_renewal_keeps_the_holder_record_alive_with_the_lock(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with catalog_lock(client, tmp_path / "products.json", expire=2, timeout=5) as held:
        time.sleep(3.5)  # past the first expiry: only renewal keeps either key
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
    client.set(f"lock:{name}", "abc", ex=20)
    client.set(f"{name}:holder", orjson.dumps({"id": "abc", "host": "h", "pid": 1, "worker": "w",
                                               "since": time.time() - 100}), ex=20)
    assert "held for 100s" in (read_lock(client, name).stuck(30) or "")
    assert read_lock(client, name).stuck(300) is None


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
