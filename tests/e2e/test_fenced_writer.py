"""A writer paused (SIGSTOP) past its lock's expiry while another commits must not clobber that commit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from catalog_core.settings import Settings
from tests.helpers import cli_env, product, write_jsonl
from worker.catalog_file import serialize_catalog
from worker.lock import lock_name
from worker.state import read_state, state_path

pytestmark = pytest.mark.slow

CATALOG_SIZE = 60_000
LOCK_EXPIRE_S = 2


def env_for(settings: Settings) -> dict[str, str]:
    return cli_env(settings, CATALOG_LOCK_EXPIRE=str(LOCK_EXPIRE_S), CATALOG_LOCK_TIMEOUT="20")


def catalog_temp_exists(catalog: Path) -> bool:
    pattern = re.compile(rf"^\.{re.escape(catalog.name)}\.[0-9a-f]{{8}}\.tmp$")
    return any(pattern.match(name) for name in os.listdir(catalog.parent))


def wait_for(condition, timeout: float, step: float = 0.0005) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def test_a_paused_writer_whose_lock_expired_aborts_and_retries_instead_of_overwriting(
    settings: Settings, tmp_path: Path
) -> None:
    catalog = settings.catalog_path
    catalog.parent.mkdir(parents=True)
    catalog.write_bytes(serialize_catalog([product(f"P{i:06d}") for i in range(CATALOG_SIZE)]))
    first = write_jsonl(tmp_path / "paused.jsonl", [{"product_id": "P000001", "category": "from the paused writer"}])
    second = write_jsonl(tmp_path / "next.jsonl", [{"product_id": "P000002", "category": "from the next writer"}])
    client = redis.Redis.from_url(settings.redis_url)
    lock_key = f"lock:{lock_name(catalog)}"
    command = [sys.executable, "-m", "catalog_cli", "apply", "--json"]

    paused = subprocess.Popen([*command, str(first)], env=env_for(settings), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: catalog_temp_exists(catalog), timeout=30), "the first writer never started writing"
        paused.send_signal(signal.SIGSTOP)
        assert client.exists(lock_key), "the paused writer should hold the lock"
        assert wait_for(lambda: not client.exists(lock_key), timeout=LOCK_EXPIRE_S + 5, step=0.05), \
            "the paused writer's lock never expired"

        nxt = subprocess.run([*command, str(second)], env=env_for(settings), capture_output=True, text=True,
                             timeout=60)
        assert nxt.returncode == 0, nxt.stderr
        next_result = json.loads(nxt.stdout)
        assert next_result["status"] == "applied"
    finally:
        paused.send_signal(signal.SIGCONT)
    out, err = paused.communicate(timeout=60)
    assert paused.returncode == 0, err
    paused_result = json.loads(out)
    assert paused_result["status"] == "applied"
    assert "write abandoned" in err  # it noticed, and started over with a fresh read
    assert paused_result["fence"] > next_result["fence"]

    products = {p["product_id"]: p for p in json.loads(catalog.read_bytes())}
    assert products["P000001"]["category"] == "from the paused writer"
    assert products["P000002"]["category"] == "from the next writer"  # not clobbered
    state = read_state(state_path(catalog))
    assert state is not None and state.fence == paused_result["fence"]
    verify = subprocess.run([sys.executable, "-m", "catalog_cli", "verify"], env=env_for(settings),
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
