"""The worker's and the beat's healthchecks from docker-compose.yml, run for real.

Each check is run with ``sh`` exactly as Docker runs a ``CMD-SHELL`` test, against a worker and
a beat started with the compose file's own commands (``celery`` from this venv instead of the
image's), on the test's private Redis: healthy while they run, unhealthy otherwise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.supervisor import celery_command
from tests.e2e.worker_fixtures import REPO_ROOT, Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.test_compose import COMPOSE_FILE, command_of, command_option, interpolate

pytestmark = pytest.mark.slow

HEALTHY_WITHIN_S = 60.0


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]


def healthcheck(service: dict[str, Any]) -> str:
    kind, snippet = service["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    return interpolate(snippet)  # $$ -> $, as compose hands it to the container


def run_check(snippet: str, stack: Stack, **env: str) -> subprocess.CompletedProcess[str]:
    """``sh -c snippet`` in the stack's environment, with this venv's ``celery`` on the PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(["sh", "-c", snippet], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                          env={**stack.env, "PATH": path, **env})


def compose_celery(service: dict[str, Any], *replace: tuple[str, str]) -> list[str]:
    """The service's ``celery ...`` command, run by this interpreter, with paths replaced."""
    command = command_of(service)
    assert command[0] == "celery"
    args = command[1:]
    for old, new in replace:
        args = [arg.replace(old, new) for arg in args]
    return celery_command(*args)


def test_the_worker_healthcheck_passes_for_its_own_running_worker_only(services: dict[str, Any],
                                                                       stack: Stack) -> None:
    snippet = healthcheck(services["worker"])
    here = socket.gethostname()  # what Docker puts in $HOSTNAME and Celery in the node name
    worker = stack.supervisor.start("celery", compose_celery(services["worker"]))
    stack.wait_for_workers([worker])

    healthy = run_check(snippet, stack, HOSTNAME=here)
    assert healthy.returncode == 0, healthy
    # A node that does not answer is waited for the whole ping timeout: shorter here, same check.
    assert "--ping-timeout 10" in snippet
    unanswered = snippet.replace("--ping-timeout 10", "--ping-timeout 2")
    other = run_check(unanswered, stack, HOSTNAME=f"not-{here}")
    assert other.returncode != 0, "the check must ask this container's node, not any node"

    worker.stop()
    stopped = run_check(unanswered, stack, HOSTNAME=here)
    assert stopped.returncode != 0, stopped
    assert "Traceback" not in stopped.stderr


def test_the_beat_healthcheck_passes_while_beat_keeps_its_schedule_file_fresh(services: dict[str, Any],
                                                                              stack: Stack, tmp_path: Path) -> None:
    beat_service = services["beat"]
    schedule = Path(command_option(command_of(beat_service), "--schedule") or "")
    local = tmp_path / "beat"
    local.mkdir()
    snippet = healthcheck(beat_service).replace(str(schedule.parent), str(local))
    assert run_check(snippet, stack).returncode != 0, "no schedule file yet: not healthy"

    beat = stack.supervisor.start("beat", compose_celery(beat_service, (str(schedule.parent), str(local))))
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while (result := run_check(snippet, stack)).returncode != 0:
        if not beat.alive() or time.monotonic() > deadline:
            stack.fail(f"beat never became healthy: {result}")
        time.sleep(0.5)
    assert any(path.name.startswith(schedule.name) for path in local.iterdir())

    beat.stop()
    stale = time.time() - 11 * 60  # a beat that stopped writing 11 minutes ago
    for path in local.iterdir():
        os.utime(path, (stale, stale))
    assert run_check(snippet, stack).returncode != 0, "a stale schedule file must fail the check"
