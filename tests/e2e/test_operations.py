"""Operations with real workers, beat and Redis: a metrics scrape during a run, `catalog health`, JSON logs."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from catalog_core.settings import load_settings
from devtools.redis_server import RedisServer, free_port
from tests.e2e.worker_fixtures import REPO_ROOT, Stack, child_env, make_settings, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product

pytestmark = pytest.mark.slow

SCRAPE_WITHIN_S = 30.0


def scrape(port: int, exporter: subprocess.Popen[bytes]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape of the real exporter's /metrics, retried until it listens."""
    deadline = time.monotonic() + SCRAPE_WITHIN_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode()
            break
        except OSError:
            if exporter.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, metric: str, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


def health(stack: Stack, *args: str) -> tuple[int, dict]:
    done = stack.cli("health", "--json", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, orjson.loads(done.stdout)


def statuses(report: dict) -> dict[str, str]:
    return {check["name"]: check["status"] for check in report["checks"]}


def test_a_scrape_during_a_run_shows_the_batches_by_outcome_and_the_catalog(stack: Stack) -> None:
    stack.seed([product("SEED-1")])
    stack.start_worker(1)
    handles = [stack.producer.submit([product("A-1"), product("A-2")], source="feed-a"),
               stack.producer.submit([{"product_id": "SEED-1", "category": "Cruises"}], source="feed-b"),
               stack.producer.submit([{"product_id": "NEW-1"}], source="feed-bad")]  # a new product needs a name
    states = stack.wait_all(handles, timeout=60)
    assert [states[h.batch_id].result.status for h in handles] == ["applied", "applied", "rejected"]  # type: ignore[union-attr]

    port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "catalog_cli", "metrics", "--port", str(port)],
                                env=stack.env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        samples = scrape(port, exporter)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
    queue = stack.settings.queue
    # Expected numbers from the three batches above, counted by hand.
    assert value(samples, "catalog_batches_total", queue=queue, outcome="applied") == 2
    assert value(samples, "catalog_batches_total", queue=queue, outcome="rejected") == 1
    assert value(samples, "catalog_batches_total", queue=queue, outcome="failed") == 0
    assert value(samples, "catalog_records_total", queue=queue, change="created") == 2
    assert value(samples, "catalog_records_total", queue=queue, change="updated") == 1
    assert value(samples, "celery_task_succeeded_total", name="catalog.ingest_batch", queue_name=queue) == 3
    assert value(samples, "catalog_rejected_batches", queue=queue) == 1
    assert value(samples, "catalog_products") == 3
    assert value(samples, "celery_queue_length", queue_name=queue) == 0
    assert value(samples, "catalog_commits_total") >= 1
    assert value(samples, "catalog_backups") >= 1
    assert value(samples, "catalog_redis_up") == 1
    assert exporter.returncode in (0, -15), exporter.stderr.read() if exporter.stderr else ""


def test_health_is_ok_with_a_worker_and_beat_then_degraded_by_a_stuck_lock(stack_factory) -> None:  # noqa: ANN001
    stack = stack_factory(rotate_every=1)
    stack.start_worker(1)
    stack.start_beat()
    stack.wait(stack.producer.submit([product("H-1")], source="health"))
    deadline = time.monotonic() + 30
    while (result := health(stack))[0] != 0 and time.monotonic() < deadline:
        time.sleep(1)  # beat's first rotation comes one interval after its start
    code, report = result
    assert code == 0, report
    assert set(statuses(report).values()) == {"ok"}, report

    # A lock set by hand, as a writer that never releases it: a long expiry nobody renews.
    from worker.lock import existing_lock_name
    name = existing_lock_name(stack.settings.catalog_path)
    stack.redis().set(f"lock:{name}", "stuck-by-hand", ex=600)
    code, report = health(stack)
    assert code == 1, report
    assert statuses(report)["lock"] == "degraded"
    shown = stack.cli("lock")
    assert shown.returncode == 1 and "STUCK" in shown.stdout and "unknown holder" in shown.stdout, shown.stdout


def test_health_exits_3_when_redis_stops_and_says_so_on_one_line(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = load_settings(path=tmp_path / "catalog" / "products.json", redis_url=server.url)
        env = child_env(settings)
        args = [sys.executable, "-m", "catalog_cli", "health", "--check", "redis", "--check", "catalog",
                "--check", "lock"]
        up = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=REPO_ROOT)
        assert up.returncode == 0, up.stdout + up.stderr
    finally:
        server.stop()
    down = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=REPO_ROOT)
    assert down.returncode == 3, down.stdout + down.stderr
    lines = down.stdout.splitlines()
    assert any(line.startswith("down") and "redis" in line for line in lines), down.stdout
    assert any(line.startswith("skipped") and "lock" in line for line in lines), down.stdout
    assert "Traceback" not in down.stderr


PASSWORD = "s3cretPW-ops-4d2e"


def test_json_logs_carry_the_batch_fields_and_no_password(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", password=PASSWORD) as server:
        stack = Stack(make_settings(tmp_path, server.url, log_format="json"), tmp_path)
        try:
            worker = stack.start_worker(1)
            handle = stack.producer.submit([product("J-1")], source="json-feed")
            state = stack.wait(handle)
            assert state.result is not None and state.result.status == "applied"
            cli = stack.cli("-v", "lock")  # the CLI logs in JSON too (-v: INFO)
            log_text = worker.log()
        finally:
            stack.stop_all()
    assert PASSWORD in server.url and PASSWORD not in log_text + cli.stdout + cli.stderr
    lines = [orjson.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    about = [line for line in lines if line.get("batch_id") == handle.batch_id]
    assert about, f"no JSON line names the batch:\n{log_text[-3000:]}"
    [applied] = [line for line in about if line["logger"] == "catalog.worker" and "applied" in line["message"]]
    assert applied["source"] == "json-feed"
    assert applied["sequence"] == state.result.sequence and applied["fence"] == state.result.fence
    assert {"time", "level", "logger", "message"} <= set(applied)
    connected = [line for line in lines if "Connected to" in line["message"]]
    assert connected and ":**@" in connected[0]["message"]  # the URL is there, its password masked
