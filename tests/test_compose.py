"""The production path (docker-compose.yml and the Dockerfile), checked by parsing them.

No Docker engine is needed: these tests read the files and check the properties the
deployment relies on (a durable Redis, scalable workers, a single beat, one shared catalog).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"

# The exact commands of the worker and the beat; other tests may compare with these.
WORKER_COMMAND: list[str] = ["celery", "-A", "worker", "worker", "--loglevel=INFO", "--concurrency=2"]
BEAT_COMMAND: list[str] = ["celery", "-A", "worker", "beat", "--loglevel=INFO", "--schedule", "/data/beat/celerybeat-schedule"]

CATALOG_ENV: dict[str, str] = {
    "CATALOG_PATH": "/data/catalog/products.json",
    "CATALOG_BACKUP_DIR": "/data/catalog/backups",
    "CATALOG_REDIS_URL": "redis://redis:6379/0",
}


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command]


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


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def copy_sources() -> set[str]:
    """Every source path of the Dockerfile's COPY lines, normalised (no ./, no trailing /)."""
    sources: set[str] = set()
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY":
            continue
        parts = [part for part in shlex.split(arguments) if not part.startswith("--")]
        for source in parts[:-1]:
            sources.add(source.removeprefix("./").rstrip("/"))
    return sources


# --- redis -------------------------------------------------------------------------------


def test_redis_is_version_7_with_aof_noeviction_and_a_healthcheck(compose: dict[str, Any], services: dict[str, Any]) -> None:
    redis_service = services["redis"]
    image = redis_service["image"].split("@")[0]
    assert image == "redis:7" or image.startswith("redis:7.")

    command = command_of(redis_service)
    assert command[0] == "redis-server"
    assert command_option(command, "--appendonly") == "yes"
    assert command_option(command, "--appendfsync") == "everysec"
    assert command_option(command, "--maxmemory-policy") == "noeviction"

    test = redis_service["healthcheck"]["test"]
    test_words = shlex.split(test) if isinstance(test, str) else test
    assert "redis-cli" in " ".join(test_words) and "ping" in test_words

    named_volume_at(compose, redis_service, "/data")
    assert redis_service.get("restart") in {"always", "unless-stopped", "on-failure"}


# --- worker ------------------------------------------------------------------------------


def test_the_worker_has_no_container_name_and_no_ports_so_it_can_be_scaled(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container name forbids --scale worker=N"
    assert "ports" not in worker, "a published port collides as soon as there are two workers"
    assert "hostname" not in worker, "a fixed hostname gives every worker the same Celery node name"
    assert (worker.get("deploy") or {}).get("replicas", 1) >= 1
    assert worker.get("restart") in {"always", "unless-stopped", "on-failure"}


def test_the_worker_waits_for_a_healthy_redis_and_has_time_to_finish_a_batch(services: dict[str, Any]) -> None:
    for name in ("worker", "beat"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    # Celery's warm shutdown lets running batches finish; Docker's default 10 s would cut them off.
    assert seconds_of(services["worker"]["stop_grace_period"]) >= 30


# --- beat --------------------------------------------------------------------------------


def test_there_is_exactly_one_beat_service_with_one_replica(services: dict[str, Any]) -> None:
    beats = [name for name, service in services.items() if celery_subcommand(command_of(service)) == "beat"]
    assert beats == ["beat"], "a second beat would send every scheduled task twice"
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "container_name" not in services["beat"]


# --- shared catalog ----------------------------------------------------------------------


def test_worker_and_beat_share_the_catalog_volume_and_the_catalog_environment(compose: dict[str, Any], services: dict[str, Any]) -> None:
    worker, beat = services["worker"], services["beat"]

    assert catalog_env_of(worker) == catalog_env_of(beat) == CATALOG_ENV

    catalog_dir = str(Path(CATALOG_ENV["CATALOG_PATH"]).parent)
    mount_point = next(target for target in mounts_of(worker) if catalog_dir.startswith(target.rstrip("/") + "/"))
    volume = named_volume_at(compose, worker, mount_point)
    assert volume == "catalog-data"
    assert named_volume_at(compose, beat, mount_point) == volume
    assert CATALOG_ENV["CATALOG_BACKUP_DIR"].startswith(mount_point.rstrip("/") + "/")

    # Both run the same image, so the catalog code on both sides is the same.
    assert worker.get("build") == beat.get("build")
    assert worker.get("image") == beat.get("image")
    assert set(compose["volumes"]) >= {"redis-data", "catalog-data"}


def test_worker_and_beat_commands_are_exactly_the_celery_worker_and_beat_commands(services: dict[str, Any]) -> None:
    assert command_of(services["worker"]) == WORKER_COMMAND
    assert command_of(services["beat"]) == BEAT_COMMAND
    # The beat's schedule lives on the shared volume, so it survives a restart of the container.
    schedule = command_option(BEAT_COMMAND, "--schedule")
    assert schedule is not None
    assert any(schedule.startswith(target.rstrip("/") + "/") for target in mounts_of(services["beat"]))


# --- flower ------------------------------------------------------------------------------


def test_flower_runs_only_under_the_monitoring_profile(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["image"].startswith("mher/flower")
    assert flower["profiles"] == ["monitoring"]
    assert environment_of(flower).get("CELERY_BROKER_URL") == CATALOG_ENV["CATALOG_REDIS_URL"]
    unprofiled = {name for name, service in services.items() if not service.get("profiles")}
    assert unprofiled == {"redis", "worker", "beat"}
    # Only the monitoring profile publishes a port.
    assert [name for name, service in services.items() if service.get("ports")] == ["flower"]


# --- Dockerfile --------------------------------------------------------------------------


def test_the_dockerfile_exists_uses_python_3_11_and_does_not_run_as_root() -> None:
    assert DOCKERFILE.is_file()
    instructions = dockerfile_instructions()

    bases = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    assert bases and bases[-1].startswith("python:3.11")

    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}

    assert any(keyword == "RUN" and "pip install --no-cache-dir ." in arguments for keyword, arguments in instructions)
    workdirs = [arguments for keyword, arguments in instructions if keyword == "WORKDIR"]
    assert workdirs[-1] == "/app"


def test_the_dockerfile_copies_every_package_listed_in_pyproject() -> None:
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.split(".")[0].rstrip("*") for pattern in patterns}
    assert packages, "pyproject lists no packages"

    sources = copy_sources()
    missing = packages - sources
    assert not missing, f"the Dockerfile does not COPY {sorted(missing)}"
    # pip install . also needs the metadata, including the readme pyproject names.
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= sources


def test_the_dockerignore_keeps_what_the_dockerfile_copies_and_drops_local_state() -> None:
    patterns = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copy_sources():
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in patterns), f"{source} is in .dockerignore"
    for local_state in (".venv", ".git", "data", ".pytest_cache"):
        assert local_state in patterns
