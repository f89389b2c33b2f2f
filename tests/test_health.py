"""`catalog health`, check by check, against a real redis-server and real files (no workers: --check)."""

from __future__ import annotations

import time

import orjson
import redis

from catalog_core.settings import Settings
from tests.conftest import CliRunner
from tests.helpers import product, write_jsonl
from worker import metrics
from worker.catalog_file import serialize_catalog


def checks(run_cli: CliRunner, *names: str) -> tuple[int, dict[str, tuple[str, str]]]:
    args = [arg for name in names for arg in ("--check", name)]
    done = run_cli("health", "--json", *args)
    assert "Traceback" not in done.stderr, done.stderr
    report = orjson.loads(done.stdout)
    return done.returncode, {c["name"]: (c["status"], c["detail"]) for c in report["checks"]}


def test_a_catalog_that_agrees_with_its_state_is_ok_and_one_edited_by_hand_is_degraded(
        settings: Settings, run_cli: CliRunner, tmp_path) -> None:  # noqa: ANN001
    assert checks(run_cli, "catalog")[0] == 0  # no catalog yet
    applied = run_cli("apply", str(write_jsonl(tmp_path / "b.jsonl", [product("A-1")])))
    assert applied.returncode == 0, applied.stderr
    code, found = checks(run_cli, "catalog")
    assert code == 0 and found["catalog"][0] == "ok", found
    settings.catalog_path.write_bytes(serialize_catalog([product("A-1"), product("HAND-1")]))
    code, found = checks(run_cli, "catalog")
    assert code == 1 and found["catalog"][0] == "degraded" and "another version" in found["catalog"][1]
    settings.catalog_path.write_bytes(b"[{not json")
    code, found = checks(run_cli, "catalog")
    assert code == 1 and found["catalog"][0] == "degraded"


def test_a_deleted_state_file_or_catalog_is_degraded_and_says_that_writes_refuse(
        settings: Settings, run_cli: CliRunner, tmp_path) -> None:  # noqa: ANN001
    for number in (1, 2):  # two commits: the second keeps the first's state as products.json.state.prev
        applied = run_cli("apply", str(write_jsonl(tmp_path / f"b{number}.jsonl", [product(f"A-{number}")])))
        assert applied.returncode == 0, applied.stderr
    state = settings.catalog_path.with_name("products.json.state")
    kept = state.read_bytes()
    state.unlink()
    code, found = checks(run_cli, "catalog")
    assert code == 1 and found["catalog"][0] == "degraded" and "state file is missing" in found["catalog"][1]
    state.write_bytes(kept)
    settings.catalog_path.unlink()
    code, found = checks(run_cli, "catalog")
    assert code == 1 and found["catalog"][0] == "degraded" and "backups restore" in found["catalog"][1]


def test_an_unacked_batch_older_than_the_visibility_timeout_is_degraded(settings: Settings,
                                                                       run_cli: CliRunner) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    client.zadd("unacked_index", {"fresh": time.time() - 5})
    assert checks(run_cli, "unacked")[0] == 0
    client.zadd("unacked_index", {"old": time.time() - settings.visibility_timeout - 60})
    code, found = checks(run_cli, "unacked")
    assert code == 1 and "2 unacknowledged" in found["unacked"][1], found


def test_rotation_is_ok_within_two_intervals_of_beats_start_or_last_rotation_and_degraded_after(
        settings: Settings, run_cli: CliRunner) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    code, found = checks(run_cli, "rotation")
    assert code == 1 and "never started" in found["rotation"][1]
    metrics.record_beat_start(client, settings.queue, time.time() - 10)
    assert checks(run_cli, "rotation")[0] == 0
    metrics.record_beat_start(client, settings.queue, time.time() - 2 * settings.rotate_every - 60)
    assert checks(run_cli, "rotation")[0] == 1
    metrics.record_rotation(client, settings.queue, time.time() - 30)
    code, found = checks(run_cli, "rotation")
    assert code == 0 and "last rotation" in found["rotation"][1]


def test_no_worker_answering_is_degraded(run_cli: CliRunner) -> None:
    code, found = checks(run_cli, "workers")
    assert code == 1 and found["workers"][0] == "degraded" and found["redis"][0] == "ok"


def test_an_unknown_check_is_bad_input(run_cli: CliRunner) -> None:
    done = run_cli("health", "--check", "disk")
    assert done.returncode == 2 and "unknown check" in done.stderr
