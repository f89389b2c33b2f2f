"""docker-compose.yml as an operator reads it: durability, stop timing, health checks, limits,
logs, pinned images, Flower's result backend and the readers' export job.

Each value is checked against what it must agree with (the settings' defaults, Celery's beat
timing, the benchmark figures in bench/README.md), never against a copy of itself. The commands
behind them are run in test_compose_healthchecks.py and test_compose_commands.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from catalog_core.settings import Settings
from tests.test_compose import (  # noqa: F401 - compose and services are fixtures
    README,
    REPO_ROOT,
    catalog_env_of,
    command_of,
    command_option,
    compose,
    interpolate,
    mounts_of,
    named_volume_at,
    seconds_of,
    services,
)

# --- durability, stop timing, health, limits, logs, images ---------------------------------

BENCH_README = REPO_ROOT / "bench" / "README.md"
LONG_RUNNING = ("redis", "worker", "beat", "flower")
MEMORY_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30}


def bytes_of(size: str) -> int:
    """A compose or Redis memory size (``768m``, ``1gb``, ``1536M``) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", interpolate(str(size)).lower())
    assert match and match.group(2) in MEMORY_UNITS, f"unreadable size {size!r}"
    return int(float(match.group(1)) * MEMORY_UNITS[match.group(2)])


def settings_of(service: dict[str, Any]) -> Settings:
    """The settings a catalog container runs with: its CATALOG_* variables over the defaults."""
    values = {key.removeprefix("CATALOG_").lower(): value for key, value in catalog_env_of(service).items()}
    values.pop("redis_password_file", None)  # a file inside the container
    return Settings(**values)


def limits_of(service: dict[str, Any]) -> dict[str, Any]:
    return ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}


def bench_peak_worker_rss_bytes() -> int:
    """Peak memory (PSS) of one worker from the throughput table in bench/README.md."""
    rows = re.findall(r"^\|\s*1\s*\|.*\|\s*(\d+)\s*MB\s*\|\s*$", BENCH_README.read_text(encoding="utf-8"), re.M)
    assert len(rows) == 1, f"expected one 1-worker row with a peak RSS in {BENCH_README.name}: {rows}"
    return int(rows[0]) * 2**20


def test_redis_by_default_fsyncs_every_write_before_it_acknowledges_it(services: dict[str, Any]) -> None:
    # everysec loses the last second on a host crash: queued batches (shown as `lost`) and
    # sequence numbers (the counter comes back lower, so numbers can be handed out twice).
    assert command_option(command_of(services["redis"]), "--appendfsync") == "always"
    production = README.read_text(encoding="utf-8").split("## Production: docker-compose", 1)[1].split("\n## ", 1)[0]
    for word in ("appendfsync always", "everysec", "lost"):
        assert word in production, f"the README's production section does not explain {word!r}"


def test_a_stopped_worker_has_time_to_finish_its_longest_batch_before_docker_kills_it(
    services: dict[str, Any],
) -> None:
    worker = services["worker"]
    settings = settings_of(worker)
    # Docker sends stop_signal (SIGTERM by default: Celery's warm shutdown, which lets running
    # batches finish), then SIGKILL after stop_grace_period. No batch runs past the hard limit.
    assert worker.get("stop_signal", "SIGTERM") in {"SIGTERM", "TERM", "15"}
    grace = seconds_of(worker["stop_grace_period"])
    assert grace > settings.task_time_limit, (
        f"stop_grace_period {grace:g}s <= CATALOG_TASK_TIME_LIMIT {settings.task_time_limit}s: a batch cut off "
        f"by SIGKILL waits out the {settings.visibility_timeout}s visibility timeout")


def test_the_worker_healthcheck_pings_this_containers_own_node(services: dict[str, Any]) -> None:
    worker = services["worker"]
    kind, snippet = worker["healthcheck"]["test"]
    assert kind == "CMD-SHELL"  # a shell, to expand $HOSTNAME
    words = shlex.split(interpolate(snippet).split(">")[0])
    # `catalog health`, its workers check alone: the deployment-wide checks are not this container's.
    assert words[:4] == ["catalog", "health", "--check", "workers"]
    assert words.count("--check") == 1
    # Celery names a node celery@<hostname> unless --hostname/-n says otherwise, and Docker
    # sets $HOSTNAME to the container's host name: the two agree only without --hostname.
    command = command_of(worker)
    assert command_option(command, "--hostname") is None and command_option(command, "-n") is None
    assert command_option(words, "--node") == "celery@$HOSTNAME"
    assert seconds_of(worker["healthcheck"]["timeout"]) > float(command_option(words, "--ping-timeout") or 3)


def test_the_beat_healthcheck_watches_the_schedule_file_beat_is_started_with(services: dict[str, Any]) -> None:
    from celery.beat import DEFAULT_MAX_INTERVAL, Scheduler

    beat = services["beat"]
    schedule = Path(command_option(command_of(beat), "--schedule") or "")
    kind, snippet = beat["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    words = shlex.split(snippet.split("|")[0])
    assert words[:2] == ["find", str(schedule.parent)]
    assert command_option(words, "-name") == f"{schedule.name}*"
    # Beat writes the file when it syncs: at its first loop after sync_every, and it loops at
    # least every max interval. A healthy beat's file is never older than their sum.
    max_age_s = float(command_option(words, "-mmin") or "").__neg__() * 60
    assert max_age_s > Scheduler.sync_every + DEFAULT_MAX_INTERVAL


def test_every_long_running_service_has_memory_and_cpu_limits(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        limits = limits_of(services[name])
        assert bytes_of(limits["memory"]) > 0 and float(limits["cpus"]) > 0, name


def test_the_worker_memory_limit_holds_the_benchmark_peak_with_headroom(services: dict[str, Any]) -> None:
    worker = services["worker"]
    command = command_of(worker)
    # One process with threads (the pool the worker config sets; a prefork pool would multiply
    # the memory by its processes): bench/README.md's 1-worker peak, with 1.5x for catalog growth.
    assert command_option(command, "--pool") in (None, "threads") and "-P" not in command
    assert bytes_of(limits_of(worker)["memory"]) >= 1.5 * bench_peak_worker_rss_bytes()


def test_the_redis_memory_limit_leaves_room_above_maxmemory_for_an_aof_rewrite(services: dict[str, Any]) -> None:
    redis_service = services["redis"]
    maxmemory = bytes_of(command_option(command_of(redis_service), "--maxmemory") or "")
    assert bytes_of(limits_of(redis_service)["memory"]) >= 1.5 * maxmemory


def test_every_service_rotates_its_logs(services: dict[str, Any]) -> None:
    for name, service in services.items():
        logging = service.get("logging") or {}
        assert logging.get("driver") in {"json-file", "local"}, f"{name} keeps its logs forever"
        options = logging.get("options") or {}
        assert bytes_of(options["max-size"]) > 0 and int(options["max-file"]) >= 1, name


def test_every_pulled_image_is_pinned_to_a_patch_release(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue  # built here, from the Dockerfile (its base image is checked in test_dockerfile.py)
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+([-\w.]*)?(@sha256:[0-9a-f]{64})?", image), \
            f"{name}: {image} is not pinned to major.minor.patch"


def test_flower_gets_the_broker_and_the_result_backend_the_workers_use(services: dict[str, Any]) -> None:
    script = interpolate(services["flower"]["entrypoint"][-1])
    exports = dict(re.findall(r'export (CELERY_\w+)="([^"]+)"', script))
    broker = urlsplit(exports["CELERY_BROKER_URL"].replace("$(head -n 1 /run/secrets/redis_password)", "secret"))
    results = exports["CELERY_RESULT_BACKEND"]
    assert results in {"$CELERY_BROKER_URL", exports["CELERY_BROKER_URL"]}
    settings = settings_of(services["worker"])
    workers_results = urlsplit(settings.result_backend)
    assert (broker.hostname, broker.port, broker.path) == (workers_results.hostname, workers_results.port,
                                                          workers_results.path)
    assert broker.password == "secret"


# --- readers and backups -------------------------------------------------------------------


def test_the_export_job_reads_the_workers_catalog_volume_read_only(compose: dict[str, Any],
                                                                   services: dict[str, Any]) -> None:
    export, worker = services["export"], services["worker"]
    catalog = Path(catalog_env_of(worker)["CATALOG_PATH"])
    worker_mount = max((t for t in mounts_of(worker) if catalog.is_relative_to(t)), key=len)
    volume = named_volume_at(compose, worker, worker_mount)
    mounts = [v for v in export["volumes"] if isinstance(v, str) and v.startswith(f"{volume}:")]
    assert mounts == [f"{volume}:{worker_mount}:ro"], "readers must never be able to write the catalog"
    assert export.get("network_mode") == "none" and export.get("profiles") == ["export"]
    assert f"cp {catalog} " in " ".join(command_of(export))
