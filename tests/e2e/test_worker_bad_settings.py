"""A real `celery -A worker worker|beat` with bad settings: one clear line and a non-zero exit, no
traceback; a misspelled variable is logged by a worker that otherwise starts."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from catalog_core.settings import Settings
from devtools.supervisor import BEAT_ARGS, WORKER_ARGS, celery_command

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def celery_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    # os.environ holds no CATALOG_* here (tests/conftest.py). Port 1: nothing may be reached.
    return {**os.environ, "CATALOG_PATH": str(tmp_path / "products.json"), "CATALOG_REDIS_URL": "redis://127.0.0.1:1/0",
            "PYTHONUNBUFFERED": "1", **variables}


@pytest.mark.parametrize("args", [WORKER_ARGS, [*BEAT_ARGS, "--schedule={tmp}/beat-schedule"]], ids=["worker", "beat"])
def test_celery_with_broken_timing_rules_prints_one_line_naming_the_variables_and_exits_2(
        tmp_path: Path, args: list[str]) -> None:
    command = celery_command(*(arg.format(tmp=tmp_path) for arg in args))
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=START_TIMEOUT_S,
                            env=celery_env(tmp_path, CATALOG_VISIBILITY_TIMEOUT="60", CATALOG_VISIBILTY_TIMEOUT="1"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for words in ("CATALOG_VISIBILITY_TIMEOUT (60)", "CATALOG_TASK_TIME_LIMIT (600)", "CATALOG_RETRY_BACKOFF_MAX (120)",
                  "A combination that works", "did you mean CATALOG_VISIBILITY_TIMEOUT"):
        assert words in lines[0], words


def test_celery_with_a_bad_value_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(celery_command(*WORKER_ARGS), cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=START_TIMEOUT_S, env=celery_env(tmp_path, CATALOG_REDIS_URL="localhost:6379"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "CATALOG_REDIS_URL" in result.stderr


def test_a_worker_logs_a_misspelled_variable_with_the_nearest_name_and_starts(tmp_path: Path, settings: Settings) -> None:
    log = tmp_path / "worker.log"
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1", "CATALOG_VISIBILTY_TIMEOUT": "60"}
    with log.open("wb") as output:
        worker = subprocess.Popen(celery_command(*WORKER_ARGS, "--concurrency=1", "--hostname=typo@%h"),
                                  cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while " ready." not in log.read_text(errors="replace") and worker.poll() is None:
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        text = log.read_text(errors="replace")
        assert worker.poll() is None, text[-3000:]
        assert "CATALOG_VISIBILTY_TIMEOUT" in text and "did you mean CATALOG_VISIBILITY_TIMEOUT" in text, text[-3000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 15)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
                worker.wait(timeout=10)
