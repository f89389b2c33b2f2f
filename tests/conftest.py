"""Shared fixtures: a private real redis-server, isolated settings, the seed data, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.redis_server import RedisServer
from catalog_core.settings import Settings, load_settings
from tests.helpers import cli_env

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED_DIR = Path(os.environ.get("CATALOG_SEED_DIR", REPO_ROOT.parent / "shared" / "seed-data"))


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may pick up a developer's CATALOG_* variables (or a Redis on 6379 through them)."""
    for name in list(os.environ):
        if name.startswith("CATALOG_") and name != "CATALOG_SEED_DIR":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server of our own, on a free port, stopped after the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The private server's URL, emptied before each test."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    return tmp_path / "catalog" / "products.json"


@pytest.fixture
def settings(catalog_path: Path, redis_url: str) -> Settings:
    return load_settings(path=catalog_path, redis_url=redis_url, lock_expire=5, lock_timeout=20)


@pytest.fixture
def seed_dir() -> Path:
    if not (SEED_DIR / "products.json").exists():
        pytest.skip(f"seed data not found at {SEED_DIR} (set CATALOG_SEED_DIR to run these tests)")
    return SEED_DIR


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli(settings: Settings) -> CliRunner:
    """Run the real ``catalog`` command in a subprocess against the test's catalog and Redis."""

    def run(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = cli_env(settings, **(env or {}))
        return subprocess.run(
            [sys.executable, "-m", "catalog_cli", *args],
            capture_output=True, text=True, timeout=timeout, env=environment,
        )

    return run
