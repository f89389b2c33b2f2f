"""worker.lock: the catalog lock against a real redis-server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from catalog_core.errors import LockLostError, LockTimeoutError, RedisUnavailableError
from catalog_core.settings import Settings
from worker.lock import catalog_lock, lock_name


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10)


def test_a_relative_and_an_absolute_path_to_one_catalog_share_its_lock_and_two_catalogs_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert lock_name(Path("products.json")) == lock_name(tmp_path / "products.json")
    assert lock_name(tmp_path / "a" / "products.json") != lock_name(tmp_path / "b" / "products.json")


def test_a_second_writer_times_out_while_the_lock_is_held(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    with catalog_lock(client_for(redis_url), path, expire=10, timeout=5):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match="CATALOG_LOCK_TIMEOUT"):
            with catalog_lock(client_for(redis_url), path, expire=10, timeout=1.5):
                pass
        assert time.monotonic() - started < 5


def test_a_waiter_gets_the_lock_when_the_holder_releases_it(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    order: list[str] = []
    held = threading.Event()

    def holder() -> None:
        with catalog_lock(client_for(redis_url), path, expire=10, timeout=5):
            held.set()
            time.sleep(0.5)
            order.append("holder done")

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(5)
    with catalog_lock(client_for(redis_url), path, expire=10, timeout=10):
        order.append("waiter in")
    thread.join(10)
    assert order == ["holder done", "waiter in"]


def test_a_waiter_gets_a_lock_whose_holder_vanished_once_it_expires(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    client = client_for(redis_url)
    client.set(f"lock:{lock_name(path)}", b"dead-writer", ex=2)  # what a kill -9 leaves behind
    started = time.monotonic()
    with catalog_lock(client, path, expire=10, timeout=10):
        waited = time.monotonic() - started
    assert 1 <= waited < 6


def test_the_lock_is_renewed_while_a_long_write_runs(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    with catalog_lock(client_for(redis_url), path, expire=2, timeout=5) as held:
        time.sleep(3.5)
        held.ensure_held()


def test_ensure_held_fails_once_another_writer_has_the_lock(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    client = client_for(redis_url)
    with catalog_lock(client, path, expire=10, timeout=5) as held:
        client.set(f"lock:{lock_name(path)}", b"someone-else", ex=10)
        with pytest.raises(LockLostError, match="write abandoned"):
            held.ensure_held()


def test_ensure_held_fails_once_the_lock_expired(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    client = client_for(redis_url)
    with catalog_lock(client, path, expire=10, timeout=5) as held:
        client.delete(f"lock:{lock_name(path)}")
        with pytest.raises(LockLostError):
            held.ensure_held()


def test_an_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, socket_timeout=1)
    with pytest.raises(RedisUnavailableError):
        with catalog_lock(dead, tmp_path / "products.json", expire=5, timeout=2):
            pass


def test_a_plain_python_redis_lock_still_works_in_a_process_that_took_the_catalog_lock_first(
    settings: Settings, tmp_path: Path
) -> None:
    import subprocess
    import sys

    # A fresh process: the library registers its scripts once per process, on the first class used.
    code = (
        "import redis, redis_lock, sys\n"
        "from pathlib import Path\n"
        "from worker.lock import catalog_lock\n"
        "client = redis.Redis.from_url(sys.argv[1])\n"
        "with catalog_lock(client, Path(sys.argv[2]), 5, 5):\n"
        "    pass\n"
        "plain = redis_lock.Lock(client, 'plain', expire=5)\n"
        "assert plain.acquire(blocking=False)\n"
        "plain.release()\n"
    )
    done = subprocess.run([sys.executable, "-c", code, settings.redis_url, str(tmp_path / "products.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
