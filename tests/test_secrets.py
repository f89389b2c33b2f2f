"""A Redis password is never printed: by any `catalog` command, any worker or beat log, any error.

A real redis-server with ``requirepass`` and an ACL user; every command run as a real process,
against good, unreachable, wrongly authenticated and malformed URLs; everything it writes is
searched for the passwords. Each test also checks that the commands really ran (exit codes),
so that it cannot pass by running nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from catalog_core.errors import RedisUnavailableError, SettingsError
from catalog_core.redis_client import connect, display_url
from devtools.redis_server import RedisServer, free_port
from catalog_core.settings import Settings, load_settings
from tests.e2e.worker_fixtures import Stack, make_settings, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product, write_jsonl

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cretPW-default-7f3a"
ACL_USER = "catalog-app"
ACL_PASSWORD = "s3cretPW-acl-91c2"
WRONG_PASSWORD = "s3cretPW-wrong-55d1"
SECRETS = (PASSWORD, ACL_PASSWORD, WRONG_PASSWORD)


@pytest.fixture(scope="module")
def protected_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server whose default user has a password, plus an ACL user with its own."""
    with RedisServer(tmp_path_factory.mktemp("redis-protected"), password=PASSWORD) as server:
        server.client().execute_command("ACL", "SETUSER", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all")
        yield server


@pytest.fixture
def redis_url(protected_server: RedisServer) -> str:
    """Overrides conftest's: the stack and every command in this module use the protected server."""
    protected_server.client().flushall()
    return protected_server.url


def acl_url(server: RedisServer) -> str:
    return f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{server.port}/0"


def run_catalog(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "catalog_cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO_ROOT)


def leaks(outputs: dict[str, str]) -> list[str]:
    """The names of the outputs that contain a password."""
    return [name for name, text in outputs.items() if any(secret in text for secret in SECRETS)]


def record(outputs: dict[str, str], name: str, result: subprocess.CompletedProcess[str]) -> int:
    outputs[name] = f"{result.stdout}\n{result.stderr}"
    return result.returncode


def test_the_display_form_of_a_url_masks_every_password() -> None:
    # Expected values written by hand, not produced by the function under test.
    assert display_url("redis://:s3cret@host:6379/0") == "redis://:**@host:6379/0"
    assert display_url("rediss://app:s3cret@host:6380/1") == "rediss://app:**@host:6380/1"
    assert display_url("redis://s3cret@host/0") == "redis://**@host/0"  # a lone name may be a password
    assert display_url("redis://host:6379/0") == "redis://host:6379/0"
    assert display_url("redis://:p%40ss@[::1]:6379/0") == "redis://:**@[::1]:6379/0"
    assert display_url("unix:///run/redis.sock?password=s3cret&db=2") == "unix:///run/redis.sock?password=**&db=2"
    assert display_url("rediss://:s3cret@h:1/0?ssl_cert_reqs=required") == "rediss://:**@h:1/0?ssl_cert_reqs=required"
    for malformed in ("redis://:s3cret@host:notaport/0", "redis://:s3cret@[::1/0", "redis://:s3:cret@h:99999"):
        assert "s3cret" not in display_url(malformed)
        assert "cret" not in display_url(malformed)


def test_settings_never_show_the_url_in_their_repr_or_their_errors() -> None:
    settings = Settings(redis_url=f"redis://:{PASSWORD}@h:6379/0", result_url=f"redis://:{PASSWORD}@h:6379/1")
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    with pytest.raises(ValidationError) as error:
        Settings(redis_url=f"http://:{PASSWORD}@h/0")
    assert PASSWORD not in str(error.value)
    with pytest.raises(SettingsError) as settings_error:
        load_settings(redis_url=f"http://:{PASSWORD}@h/0", result_url=f"ftp://:{PASSWORD}@h/0")
    assert PASSWORD not in str(settings_error.value)
    assert "CATALOG_REDIS_URL" in str(settings_error.value) and "CATALOG_RESULT_URL" in str(settings_error.value)


def test_connection_errors_name_the_server_without_its_password() -> None:
    unreachable = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    for url in (unreachable, f"redis://:{PASSWORD}@127.0.0.1:notaport/0", f"redis://:{PASSWORD}@h/0?db=x"):
        with pytest.raises(RedisUnavailableError) as error:
            connect(url)
        assert PASSWORD not in str(error.value)
        assert "127.0.0.1" in str(error.value) or "h/0" in str(error.value)


def test_the_acl_user_and_the_default_user_both_get_in(protected_server: RedisServer) -> None:
    assert connect(protected_server.url).ping()
    assert connect(acl_url(protected_server)).acl_whoami() == ACL_USER
    with pytest.raises(RedisUnavailableError):
        connect(f"redis://{ACL_USER}:{WRONG_PASSWORD}@127.0.0.1:{protected_server.port}/0")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=protected_server.port).ping()  # the server really wants a password


def test_no_command_prints_the_password_with_a_worker_and_beat_running(
    stack: Stack, protected_server: RedisServer, tmp_path: Path,
) -> None:
    stack.seed([product("Seed_1")])  # so that the first apply takes a backup, for `backups restore`
    stack.start_worker(1)
    stack.start_beat()
    batch = write_jsonl(tmp_path / "batch.jsonl", [product("Secret_Test_1")])
    outputs: dict[str, str] = {}
    codes: dict[str, int] = {}
    password_file = tmp_path / "redis_password"
    password_file.write_text(PASSWORD + "\n")
    forms = {
        "default user": {"CATALOG_REDIS_URL": protected_server.url},
        "acl user": {"CATALOG_REDIS_URL": acl_url(protected_server)},
        "password file": {"CATALOG_REDIS_URL": f"redis://127.0.0.1:{protected_server.port}/0",
                          "CATALOG_REDIS_PASSWORD_FILE": str(password_file)},
    }
    def run_form(form: str, variables: dict[str, str]) -> None:
        env = {**stack.env, **variables}
        commands: dict[str, list[str]] = {
            "validate": ["validate", str(batch)],
            "apply": ["-v", "apply", str(batch)],
            "verify": ["verify"],
            "stats": ["stats"],
            "enqueue --wait": ["-v", "enqueue", str(batch), "--wait", "--timeout", "60", "--batch-id", f"b-{form[0]}"],
            "enqueue": ["enqueue", str(batch)],
            "status": ["status", f"b-{form[0]}"],
            "rejected": ["rejected"],
            "backups list": ["backups", "list"],
            "backups rotate": ["backups", "rotate"],
            "health": ["health"],
            "health --json": ["health", "--json"],
            "lock": ["lock", "--json"],
        }
        for name, args in commands.items():
            codes[f"{form}: {name}"] = record(outputs, f"{form}: {name}", run_catalog(env, *args))
        backups = sorted(p.name for p in stack.settings.backup_path.glob("*.json*"))
        codes[f"{form}: backups restore"] = record(
            outputs, f"{form}: backups restore", run_catalog(env, "backups", "restore", backups[0]))

    # The three forms at once (each its own commands in order): the commands only share the catalog,
    # which they lock like any writers, and it keeps this test from taking a minute.
    with ThreadPoolExecutor(max_workers=len(forms)) as pool:
        for done in [pool.submit(run_form, form, variables) for form, variables in forms.items()]:
            done.result()
    for process in stack.processes:
        outputs[f"log of {process.name}"] = process.log()
    for page in ([], ["backups"], *([name] for name in ("validate", "apply", "verify", "stats", "enqueue",
                                                         "status", "rejected", "dev", "chaos"))):
        env = {**stack.env, "CATALOG_REDIS_URL": protected_server.url}
        record(outputs, f"{' '.join(page)} --help", run_catalog(env, *page, "--help"))
    assert leaks(outputs) == []
    assert {name: code for name, code in codes.items() if code != 0} == {}, outputs
    assert "redis://:**@127.0.0.1" in outputs["log of w1"]  # Celery's banner: the URL, masked


def test_no_failing_command_prints_the_password(protected_server: RedisServer, tmp_path: Path) -> None:
    batch = write_jsonl(tmp_path / "batch.jsonl", [product("Secret_Test_2")])
    base_env = {"PATH": "/usr/bin:/bin", "CATALOG_PATH": str(tmp_path / "catalog" / "products.json"),
                "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT)}
    bad_urls = {
        "unreachable": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0",
        "wrong password": f"redis://:{WRONG_PASSWORD}@127.0.0.1:{protected_server.port}/0",
        "wrong acl password": f"redis://{ACL_USER}:{WRONG_PASSWORD}@127.0.0.1:{protected_server.port}/0",
        "port not a number": f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
        "bad query": f"redis://:{PASSWORD}@127.0.0.1:{protected_server.port}/0?db=x",
        "not a redis scheme": f"http://:{PASSWORD}@127.0.0.1:{protected_server.port}/0",
    }
    commands = {
        "apply": ["apply", str(batch)],
        "enqueue": ["enqueue", str(batch), "--wait", "--timeout", "5"],
        "status": ["status", "some-batch"],
        "rejected": ["rejected"],
        "health": ["health"],
        "lock": ["lock"],
        "backups restore": ["backups", "restore", "products_20260101_000000_000000.json"],
    }
    outputs: dict[str, str] = {}
    codes: dict[str, int] = {}
    runs = {f"{kind}: {name}": ({**base_env, "CATALOG_REDIS_URL": url}, args)
            for kind, url in bad_urls.items() for name, args in commands.items()}
    runs.update({f"{kind}: --redis-url": (base_env, ["rejected", "--redis-url", url]) for kind, url in bad_urls.items()})
    # Independent runs (each fails on its own): a few at once keeps this test from taking half a minute.
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = {label: pool.submit(run_catalog, env, *args) for label, (env, args) in runs.items()}
    for label, future in done.items():
        codes[label] = record(outputs, label, future.result())
    assert leaks(outputs) == []
    assert all(code != 0 for code in codes.values()), codes  # every one of them really failed


def test_catalog_dev_never_prints_the_password(protected_server: RedisServer, tmp_path: Path) -> None:
    base_env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    outputs: dict[str, str] = {}
    codes: dict[str, int] = {}
    password_file = tmp_path / "redis_password"
    password_file.write_text(PASSWORD)
    runs = {
        "dev on a protected Redis": {},  # given with --redis-url below: dev never uses CATALOG_REDIS_URL
        # The private Redis that dev starts then has no password: dev must not hand the file on.
        "dev with an unreachable Redis": {"CATALOG_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                                          "CATALOG_REDIS_PASSWORD_FILE": str(password_file)},
    }
    for name, variables in runs.items():
        folder = tmp_path / name.replace(" ", "-")
        env = {**base_env, **variables, "CATALOG_PATH": str(folder / "products.json")}
        explicit = ["--redis-url", acl_url(protected_server)] if name == "dev on a protected Redis" else []
        codes[name] = record(outputs, name, run_catalog(
            env, "dev", "--exit-after-demo", "--state-dir", str(folder / "state"), "--timeout", "90", *explicit,
            timeout=240))
    assert leaks(outputs) == []
    assert codes == {name: 0 for name in runs}, outputs
    assert "redis://catalog-app:**@127.0.0.1" in outputs["dev on a protected Redis"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_worker_that_loses_redis_logs_no_password(tmp_path: Path, log_format: str) -> None:
    with RedisServer(tmp_path / "redis", password=PASSWORD) as server:
        stack = Stack(make_settings(tmp_path, server.url, log_format=log_format), tmp_path)
        try:
            worker = stack.start_worker(1)
            beat = stack.start_beat()
            server.kill()  # the broker, the result backend and the lock all gone at once
            deadline = time.monotonic() + 60
            while "Cannot connect to" not in worker.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "Cannot connect to catalog-redis://:**@127.0.0.1" in worker.log(), stack.logs()
        finally:
            stack.stop_all()
    logs = {process.name: process.log() for process in (worker, beat)}
    assert leaks(logs) == []
