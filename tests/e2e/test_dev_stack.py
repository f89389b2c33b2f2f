"""`catalog dev` (what `make run` runs): its own Redis and folder, a short story, a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.redis_server import free_port

pytestmark = pytest.mark.slow
SCREEN_LINES = 24


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    return {**env, "COLUMNS": "120", **extra}


def run_dev(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "catalog_cli", "dev", "--exit-after-demo", "--timeout", "60"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)


def test_catalog_dev_runs_in_its_own_folder_and_never_touches_the_exported_catalog_or_redis(tmp_path: Path) -> None:
    production = tmp_path / "production" / "products.json"
    env = clean_env(CATALOG_PATH=str(production), CATALOG_REDIS_URL=f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    result = run_dev(tmp_path, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not production.exists()
    assert "CATALOG_PATH and CATALOG_REDIS_URL not used" in result.stdout
    assert "private redis-server" in result.stdout and "s3cret" not in result.stdout + result.stderr
    catalog = json.loads((tmp_path / ".dev" / "catalog" / "products.json").read_text(encoding="utf-8"))
    assert len(catalog) == 6
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / ".dev")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "redis-server or beat still running after the stack stopped"


def test_the_story_fits_on_a_screen_and_names_where_the_logs_are(tmp_path: Path) -> None:
    result = run_dev(tmp_path, clean_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) <= SCREEN_LINES, result.stdout
    assert any("uae_attractions.jsonl: applied" in line for line in lines)
    assert any("uae_price_update.jsonl: applied" in line for line in lines)
    assert ".dev/logs/worker.log" in result.stdout and ".dev/logs/beat.log" in result.stdout
    assert "celery@" not in result.stdout + result.stderr  # Celery's banner went to the log file
    assert "ready." in (tmp_path / ".dev" / "logs" / "worker.log").read_text()


def test_a_second_run_creates_nothing_new_and_replays_the_price_update(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_dev(tmp_path, clean_env())
        assert result.returncode == 0, result.stderr[-3000:]
    # The attractions batch puts the original prices back, then the update applies again.
    assert "0 created, 2 updated, 4 unchanged" in result.stdout
    assert "6 products" in result.stdout


def test_ctrl_c_stops_everything_and_exits_0(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "catalog_cli", "dev", "--no-demo", "--timeout", "60"],
                               cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 90
        seen = ""
        while "Ctrl-C stops everything" not in seen and time.monotonic() < deadline and process.poll() is None:
            seen += process.stdout.readline()  # type: ignore[union-attr]
        assert "Ctrl-C stops everything" in seen, seen
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped." in err and "Traceback" not in err
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / ".dev")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
