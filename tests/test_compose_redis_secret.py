"""The shell snippets of docker-compose.yml that carry the Redis password, run here for real.

The redis service's entrypoint (password from the secret into a 0600 config file) and its
health check (``REDISCLI_AUTH``) are run with ``sh`` against a real redis-server, with the
secret's and the image's paths replaced by local ones.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from devtools.redis_server import RedisServer, find_redis_server, free_port
from tests.test_compose import COMPOSE_FILE, command_of


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    folder = tmp_path_factory.mktemp("compose-redis")
    secret = folder / "redis_password"
    secret.write_text("0123456789abcdef0123456789abcdef\n")  # as `openssl rand -hex 16` writes it
    with RedisServer(folder / "redis", password=secret.read_text().strip()) as server:
        yield server, secret


def run_shell(snippet: str, secret: Path, redis_cli: str, port: int) -> subprocess.CompletedProcess[str]:
    """A compose shell snippet, run here: the secret and redis-cli at local paths."""
    local = (snippet.replace("$$", "$").replace("/run/secrets/redis_password", str(secret))
             .replace("redis-cli", f"{redis_cli} -p {port}"))
    return subprocess.run(["sh", "-c", local], capture_output=True, text=True, timeout=30)


def test_the_redis_healthcheck_authenticates_with_the_secret(services: dict[str, Any],
                                                           protected_redis: tuple[RedisServer, Path],
                                                           tmp_path: Path) -> None:
    server, secret = protected_redis
    kind, snippet = services["redis"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    redis_cli = str(Path(find_redis_server()).with_name("redis-cli"))
    healthy = run_shell(snippet, secret, redis_cli, server.port)
    assert healthy.returncode == 0, healthy
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    assert run_shell(snippet, wrong, redis_cli, server.port).returncode != 0
    assert run_shell(snippet, secret, redis_cli, free_port()).returncode != 0


def test_redis_starts_with_the_password_from_the_secret_and_not_on_its_command_line(
    services: dict[str, Any], tmp_path: Path,
) -> None:
    entrypoint = services["redis"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    script, program_name = entrypoint[2], entrypoint[3]
    secret = tmp_path / "redis_password"
    secret.write_text("fedcba9876543210fedcba9876543210\n")
    port = free_port()
    # Here: our redis-server instead of the image's entrypoint, no chown (no redis user), local paths.
    local = (script.replace("$$", "$").replace("/run/secrets/redis_password", str(secret))
             .replace("/tmp/password.conf", str(tmp_path / "password.conf"))
             .replace("chown redis:redis", "true").replace("docker-entrypoint.sh redis-server", find_redis_server()))
    args = [*command_of(services["redis"]), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    process = subprocess.Popen(["sh", "-c", local, program_name, *args], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        server = RedisServer(tmp_path, port=port, password="fedcba9876543210fedcba9876543210", process=process)
        server.wait_ready(10)
        assert redis.Redis(port=port, password="fedcba9876543210fedcba9876543210").config_get("maxmemory") != {
            "maxmemory": "0"}
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        assert b"fedcba98" not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert (tmp_path / "password.conf").stat().st_mode & 0o077 == 0
    finally:
        process.kill()
        process.wait(10)


