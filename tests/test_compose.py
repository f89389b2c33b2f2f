"""The production path (docker-compose.yml and the Dockerfile), checked by its properties.

No Docker engine is needed. The tests check what the deployment relies on against the code,
not against values copied from the file: the services run the entry points the tests run,
every CATALOG_* variable is a real setting, workers can scale, there is one beat, the catalog
volume is shared, no password is written down. The shell snippets that carry the Redis
password are run in test_compose_redis_secret.py.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

from devtools.supervisor import BEAT_ARGS, WORKER_ARGS
from catalog_cli.main import app as catalog_app
from catalog_core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"  # for its ENV lines; its build is checked in test_dockerfile.py
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"
README = REPO_ROOT / "README.md"
GITIGNORE = REPO_ROOT / ".gitignore"
CATALOG_SERVICES = ("worker", "beat")


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def interpolate(text: str) -> str:
    """Compose's variable interpolation with nothing set: ``${VAR:-default}`` gives the default."""
    def value(match: re.Match[str]) -> str:
        assert match.group(2) == ":-", f"{match.group(0)} has no default: compose would need it set"
        return match.group(3)
    return re.sub(r"\$\{(\w+)(:-|:\?|-|\?)?([^}]*)\}", value, text.replace("$$", "\0")).replace("\0", "$")


def strings_in(node: Any) -> Iterator[str]:
    """Every string (keys too) anywhere in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings_in(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


def ignore_patterns(path: Path) -> list[str]:
    return [line.strip().strip("/") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(interpolate(command))
    return [interpolate(str(part)) for part in command]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {str(key): str(value) for key, value in env.items()}


def catalog_env_of(service: dict[str, Any]) -> dict[str, str]:
    return {key: value for key, value in environment_of(service).items() if key.startswith("CATALOG_")}


def mounts_of(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (volume name or host path) of every mount of a service."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


def named_volume_at(compose: dict[str, Any], service: dict[str, Any], target: str) -> str:
    """The named volume mounted at ``target``; fails on a bind mount or an undeclared volume."""
    source = mounts_of(service).get(target)
    assert source, f"nothing is mounted at {target}"
    assert source in (compose.get("volumes") or {}), f"{source!r} at {target} is not a declared named volume"
    return source


def command_option(command: list[str], option: str) -> str | None:
    """The value given to ``option`` in a command, as ``--opt value`` or ``--opt=value``."""
    for i, part in enumerate(command):
        if part == option and i + 1 < len(command):
            return command[i + 1]
        if part.startswith(option + "="):
            return part.split("=", 1)[1]
    return None


def celery_subcommand(command: list[str]) -> str | None:
    """``worker`` for ``celery -A worker worker ...``: the first word after celery's global options."""
    if not command or command[0] != "celery":
        return None
    words = iter(command[1:])
    for word in words:
        if word in {"-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir"}:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def seconds_of(duration: str | int | float) -> float:
    """A compose duration (``60s``, ``1m30s``, ``90``) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts and duration, f"unreadable duration {duration!r}"
    hours, minutes, seconds = (float(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


# --- the same entry points the tests use --------------------------------------------------


def test_worker_and_beat_run_the_celery_commands_the_tests_and_catalog_dev_run(services: dict[str, Any]) -> None:
    # catalog dev and tests/e2e start `python -m celery *WORKER_ARGS` / `*BEAT_ARGS`: compose
    # may add options (concurrency, schedule file), never run something else.
    worker, beat = command_of(services["worker"]), command_of(services["beat"])
    assert worker[: 1 + len(WORKER_ARGS)] == ["celery", *WORKER_ARGS]
    assert beat[: 1 + len(BEAT_ARGS)] == ["celery", *BEAT_ARGS]


def test_every_catalog_command_the_compose_file_and_the_readme_show_exists() -> None:
    production = README.read_text(encoding="utf-8").split("## Production: docker-compose", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```.*?```|`[^`\n]+`", production, flags=re.DOTALL)  # commands, not prose
    code += [line.lstrip("# ").split(" #")[0] for line in COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
             if "docker compose" in line]  # the usage lines at its top, without their comments
    shown = re.findall(r"(?<![\w/-])catalog ([a-z][a-z-]*)", "\n".join(code))
    commands = set(typer.main.get_command(catalog_app).commands)  # type: ignore[attr-defined]
    assert shown, "the production section shows no catalog command"
    assert set(shown) <= commands, f"not commands of catalog: {sorted(set(shown) - commands)}"
    # ... and the image has the `catalog` script: pip install . installs it from pyproject.
    assert tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]["catalog"]


def test_every_catalog_variable_in_the_compose_file_and_the_dockerfile_is_a_setting(compose: dict[str, Any]) -> None:
    named = {word for text in strings_in(compose) for word in re.findall(r"\bCATALOG_[A-Z_]+", text)}
    named |= set(re.findall(r"\bCATALOG_[A-Z_]+", DOCKERFILE.read_text(encoding="utf-8")))
    fields = {f"CATALOG_{name.upper()}" for name in Settings.model_fields}
    assert named, "no CATALOG_* variable found"
    assert named <= fields, f"not settings (typo?): {sorted(named - fields)}"
    for service in CATALOG_SERVICES:  # and they build valid settings together
        env = catalog_env_of(compose["services"][service])
        values = {key.removeprefix("CATALOG_").lower(): value for key, value in env.items()}
        values.pop("redis_password_file", None)  # a file inside the container; checked below
        Settings(**values)


# --- redis -------------------------------------------------------------------------------


def test_redis_keeps_its_data_and_refuses_writes_at_a_memory_limit(compose: dict[str, Any], services: dict[str, Any]) -> None:
    redis_service = services["redis"]
    image = redis_service["image"].split("@")[0]
    assert image == "redis:7" or image.startswith("redis:7.")
    command = command_of(redis_service)
    assert command_option(command, "--appendonly") == "yes"
    assert command_option(command, "--appendfsync") in {"everysec", "always"}
    # noeviction without maxmemory does nothing: Redis grows until the kernel kills it.
    assert command_option(command, "--maxmemory-policy") == "noeviction"
    maxmemory = command_option(command, "--maxmemory")
    assert maxmemory and re.fullmatch(r"[1-9]\d*(kb|mb|gb|k|m|g)?", maxmemory.lower()), maxmemory
    named_volume_at(compose, redis_service, "/data")
    assert redis_service.get("restart") in {"always", "unless-stopped", "on-failure"}


def test_no_password_is_written_in_the_compose_file_or_the_dockerfile(compose: dict[str, Any]) -> None:
    for text in [*strings_in(compose), DOCKERFILE.read_text(encoding="utf-8")]:
        for url in re.findall(r"\b[a-z]+s?://[^\s\"']+", interpolate(text)):
            password = urlsplit(url).password
            assert password is None or password.startswith("$("), f"a password written in {url!r}"
        assert not re.search(r"(requirepass|--pass|-a)\s+[\"']?\w", text), f"a password on a command line: {text!r}"


def test_every_service_that_talks_to_redis_reads_the_password_from_the_one_secret(compose: dict[str, Any]) -> None:
    (secret_name,) = compose["secrets"]
    secret_file = Path(compose["secrets"][secret_name]["file"])
    secret_path = f"/run/secrets/{secret_name}"
    for name, service in compose["services"].items():
        if service.get("network_mode") == "none":
            assert secret_name not in service.get("secrets", []), f"{name} has no network: it needs no password"
            continue
        assert secret_name in service.get("secrets", []), f"{name} does not get the {secret_name} secret"
        if name in CATALOG_SERVICES:
            assert catalog_env_of(service)["CATALOG_REDIS_PASSWORD_FILE"] == secret_path
        else:
            assert secret_path in " ".join(strings_in(service)), f"{name} never reads {secret_path}"
    # The secret file never reaches git nor the image.
    relative = secret_file.as_posix().removeprefix("./")
    for ignore_file in (GITIGNORE, DOCKERIGNORE):
        patterns = ignore_patterns(ignore_file)
        assert any(fnmatch.fnmatch(relative, p) or relative.startswith(p + "/") for p in patterns), \
            f"{relative} is not in {ignore_file.name}"


# --- worker ------------------------------------------------------------------------------


def test_the_worker_has_no_container_name_and_no_ports_so_it_can_be_scaled(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container name forbids --scale worker=N"
    assert "ports" not in worker, "a published port collides as soon as there are two workers"
    assert "hostname" not in worker, "a fixed hostname gives every worker the same Celery node name"
    assert (worker.get("deploy") or {}).get("replicas", 1) >= 1
    assert worker.get("restart") in {"always", "unless-stopped", "on-failure"}


def test_the_worker_waits_for_a_healthy_redis_and_has_time_to_finish_a_batch(services: dict[str, Any]) -> None:
    for name in CATALOG_SERVICES:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    # Celery's warm shutdown lets running batches finish; Docker's default 10 s would cut them off.
    assert seconds_of(services["worker"]["stop_grace_period"]) >= 30


# --- beat --------------------------------------------------------------------------------


def test_there_is_exactly_one_beat_and_it_cannot_be_scaled_by_accident(services: dict[str, Any]) -> None:
    beats = [name for name, service in services.items() if celery_subcommand(command_of(service)) == "beat"]
    assert len(beats) == 1, f"a second beat would send every scheduled task twice: {beats}"
    beat = services[beats[0]]
    assert beat["deploy"]["replicas"] == 1
    assert "container_name" not in beat
    workers = [name for name, service in services.items() if celery_subcommand(command_of(service)) == "worker"]
    assert workers == ["worker"]
    assert "--beat" not in command_of(services["worker"]) and "-B" not in command_of(services["worker"])


# --- shared catalog ----------------------------------------------------------------------


def test_worker_and_beat_share_one_catalog_volume_and_the_same_settings(compose: dict[str, Any], services: dict[str, Any]) -> None:
    worker, beat = services["worker"], services["beat"]
    assert catalog_env_of(worker) == catalog_env_of(beat)
    env = catalog_env_of(worker)

    def volume_holding(service: dict[str, Any], path: str) -> str:
        targets = [t for t in mounts_of(service) if path.startswith(t.rstrip("/") + "/")]
        assert targets, f"{path} is on no mount"
        return named_volume_at(compose, service, max(targets, key=len))

    schedule = command_option(command_of(beat), "--schedule")
    assert schedule is not None, "the beat's schedule must live on a volume, to survive a restart"
    volumes = {volume_holding(service, path) for service in (worker, beat)
               for path in (env["CATALOG_PATH"], env["CATALOG_BACKUP_DIR"])}
    volumes.add(volume_holding(beat, schedule))
    assert len(volumes) == 1, f"worker and beat must see the same catalog and backups: {volumes}"
    # Both run the same image, so the catalog code on both sides is the same.
    assert worker.get("build") == beat.get("build")
    assert worker.get("image") == beat.get("image")


# --- flower ------------------------------------------------------------------------------


def test_flower_runs_only_under_the_monitoring_profile_on_loopback(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["image"].startswith("mher/flower")
    assert flower["profiles"] == ["monitoring"]
    unprofiled = {name for name, service in services.items() if not service.get("profiles")}
    assert unprofiled == {"redis", "worker", "beat"}
    # Only the monitoring profile publishes a port, and only on the host's loopback.
    assert [name for name, service in services.items() if service.get("ports")] == ["flower"]
    assert all(str(port).startswith("127.0.0.1:") for port in flower["ports"])

