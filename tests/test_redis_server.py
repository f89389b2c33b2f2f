"""devtools.redis_server: a real, private redis-server process."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import redis

from catalog_core.errors import RedisUnavailableError
from devtools.redis_server import RedisServer, TlsFiles, find_redis_server, free_port


def test_a_redis_server_binary_is_found_on_a_bare_machine() -> None:
    assert Path(find_redis_server()).exists()


def test_a_private_server_starts_on_a_free_port_and_stops(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "r") as server:
        assert server.port != 6379
        assert redis.Redis.from_url(server.url).ping()
    assert server.process is not None and server.process.poll() is not None


def test_a_server_with_aof_keeps_data_across_a_crash_and_restart(tmp_path: Path) -> None:
    port = free_port()
    server = RedisServer(tmp_path / "r", port=port, appendonly=True).start()
    client = redis.Redis.from_url(server.url)
    client.set("kept", "yes")
    client.execute_command("BGREWRITEAOF")
    client.close()
    server.stop()
    restarted = RedisServer(tmp_path / "r", port=port, appendonly=True).start()
    try:
        assert redis.Redis.from_url(restarted.url).get("kept") == b"yes"
    finally:
        restarted.stop()


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "a") as first:
        with pytest.raises(RedisUnavailableError, match="exited at start"):
            RedisServer(tmp_path / "b", port=first.port).start(timeout=5)


def test_a_password_protects_the_server_and_stays_off_its_command_line(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "r", password="pw-on-no-command-line") as server:
        assert server.process is not None
        command_line = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert b"pw-on-no-command-line" not in command_line  # `ps` shows it to every user
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
        assert redis.Redis.from_url(server.url).ping()


def test_a_binary_without_tls_says_so_at_start(tmp_path: Path) -> None:
    files = TlsFiles(cert=tmp_path / "c.pem", key=tmp_path / "k.pem", ca=tmp_path / "ca.pem")
    with pytest.raises(RedisUnavailableError, match="exited at start"):
        RedisServer(tmp_path / "r", tls=files).start(timeout=5)


def test_a_server_that_exits_while_its_port_never_answers_is_reported_as_exited_in_time(tmp_path: Path) -> None:
    # Its port held by a listener that accepts and never answers (another program's), and a
    # "redis-server" that exits a moment after it starts: each look at the port must be bounded,
    # so the exit is seen and named, within the timeout, not a hang or a vague "did not answer".
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\nsleep 0.3\necho 'FATAL: cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="exited at start(.|\n)*FATAL: cannot start"):
            RedisServer(tmp_path / "r", port=silent.getsockname()[1], binary=str(fake)).start(timeout=4)
        assert time.monotonic() - started < 4
