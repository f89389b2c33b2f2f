"""`catalog dev` (what `make run` runs): Redis, worker, beat and the demo, from a bare folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalog_core.redis_server import free_port


@pytest.mark.slow
def test_catalog_dev_starts_its_own_redis_applies_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    env["CATALOG_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "catalog_cli", "dev", "--exit-after-demo", "--timeout", "60"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "started" in result.stderr and "redis-server" in result.stderr
    assert "uae_attractions.jsonl: applied" in result.stdout
    assert "uae_price_update.jsonl: applied" in result.stdout
    catalog = json.loads((tmp_path / "data" / "products.json").read_text(encoding="utf-8"))
    assert len(catalog) == 6
    assert "backups: 1" in result.stdout
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / ".dev")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "redis-server or beat still running after the stack stopped"


@pytest.mark.slow
def test_a_second_run_creates_nothing_new_and_replays_the_price_update(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    env["CATALOG_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    command = [sys.executable, "-m", "catalog_cli", "dev", "--exit-after-demo", "--timeout", "60"]
    for _ in range(2):
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
        assert result.returncode == 0, result.stderr[-3000:]
    # The attractions batch puts the original prices back, then the update applies again.
    assert "0 created, 2 updated, 4 unchanged" in result.stdout
    assert "products: 6" in result.stdout
