"""examples/node: the celery-node producer, run with the real `node` against a real worker.

Runs when `node` and `npm` are on PATH and celery-node can be installed (from
examples/node/node_modules if present, else `npm ci` into a temporary copy); skipped with the
reason otherwise, so a machine without Node or without network skips instead of failing.
The install fails fast without network (no fetch retries); NODE_EXAMPLE_TESTS=0 skips without trying.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from catalog_cli.schema_command import SchemaName, json_schema
from tests.e2e.test_plain_redis_producer import documented_block, status_of, wait_for_result
from tests.e2e.worker_fixtures import Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product, write_jsonl

# The first test also installs the packages (npm ci), within its own time limit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
INSTALL_TIMEOUT_S = 150
RUN_TIMEOUT_S = 120
FILES = ("package.json", "package-lock.json", "producer.js")


def tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="module")
def node_producer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The path of a runnable producer.js, its packages installed; or a skip that says why not."""
    if os.environ.get("NODE_EXAMPLE_TESTS") == "0":
        pytest.skip("NODE_EXAMPLE_TESTS=0")
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node or npm is not on PATH (node: {node}, npm: {npm})")
    if (EXAMPLE / "node_modules" / "celery-node" / "package.json").exists():
        return EXAMPLE / "producer.js"
    copy = tmp_path_factory.mktemp("node-producer")
    for name in FILES:
        shutil.copy2(EXAMPLE / name, copy / name)
    try:
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline",
                                    "--fetch-retries=0", "--fetch-timeout=30000"], cwd=copy,
                                   capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"`npm ci` for examples/node could not run: {exc}")
    if installed.returncode != 0:
        pytest.skip(f"`npm ci` for examples/node failed (no network?): {tail(installed.stderr)}")
    return copy / "producer.js"


def run_producer(stack: Stack, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(script), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          cwd=script.parent, env=stack.env)


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def queued_envelopes(stack: Stack) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in stack.redis().lrange(stack.settings.queue, 0, -1)]


def test_the_node_producer_takes_the_sequence_with_the_documented_script() -> None:
    source = (EXAMPLE / "producer.js").read_text(encoding="utf-8")
    _, _, after = source.partition("const NEXT_SEQUENCE = `")
    script, found, _ = after.partition("`;")
    assert found, "producer.js has no NEXT_SEQUENCE template literal"
    assert script.strip() == documented_block("script:next-sequence").strip()


def test_a_file_queued_by_the_node_producer_is_applied_and_status_shows_it(
        stack: Stack, node_producer: Path, tmp_path: Path) -> None:
    stack.seed([product("NODE-OLD", product_name="Old")])
    feed = write_jsonl(tmp_path / "feed.jsonl", [product("NODE-1"), {"product_id": "NODE-OLD", "product_name": "New"}])

    sent = run_producer(stack, node_producer, str(feed), "--batch-id", "node-1", "--source", "node-test")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    [queued] = json_lines(sent.stdout)
    assert queued["batch_id"] == "node-1" and isinstance(queued["sequence"], int)

    # What celery-node put on the list is the documented contract, before any worker reads it.
    [envelope] = queued_envelopes(stack)
    assert envelope["headers"]["id"] == envelope["properties"]["correlation_id"] == "node-1"
    assert envelope["headers"]["task"] == "catalog.ingest_batch"
    args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    assert kwargs == {} and len(args) == 1
    jsonschema.validate(args[0], json_schema(SchemaName.MESSAGE))
    assert args[0]["sequence"] == queued["sequence"]
    code, shown = status_of(stack, "node-1")
    assert (code, shown["status"]) == (4, "queued")

    stack.start_worker(1)
    meta = wait_for_result(stack, "node-1")
    assert meta["status"] == "SUCCESS", meta
    result = meta["result"]
    assert (result["status"], result["created"], result["updated"]) == ("applied", 1, 1), result
    assert result["sequence"] == queued["sequence"]
    assert stack.catalog()["NODE-OLD"]["product_name"] == "New"
    code, shown = status_of(stack, "node-1")
    assert (code, shown["status"]) == (0, "applied")


def test_the_node_producer_waits_for_the_outcome_and_exits_like_catalog_enqueue(
        stack: Stack, node_producer: Path, tmp_path: Path) -> None:
    stack.start_worker(1)
    good = write_jsonl(tmp_path / "good.jsonl", [product("NODE-W1")])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"product_id": "NODE-W2", "product_name": "no pricing"}])

    applied = run_producer(stack, node_producer, str(good), "--batch-id", "node-wait-1", "--wait", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert json_lines(applied.stdout)[-1]["status"] == "applied"

    rejected = run_producer(stack, node_producer, str(bad), "--batch-id", "node-wait-2", "--wait", "60")
    assert rejected.returncode == 1, rejected.stdout + rejected.stderr
    outcome = json_lines(rejected.stdout)[-1]
    assert outcome["status"] == "rejected" and outcome["errors"][0]["product_id"] == "NODE-W2"
    assert "NODE-W1" in stack.catalog() and "NODE-W2" not in stack.catalog()


def test_the_node_producer_refuses_a_bad_file_and_an_unreachable_redis_without_a_stack_trace(
        stack: Stack, node_producer: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    refused = run_producer(stack, node_producer, str(broken))
    assert refused.returncode == 2 and "broken.json" in refused.stderr and "    at " not in refused.stderr

    feed = write_jsonl(tmp_path / "feed.jsonl", [product("NODE-X")])
    down = subprocess.run(["node", str(node_producer), str(feed)], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, cwd=node_producer.parent,
                          env={**stack.env, "CATALOG_REDIS_URL": "redis://:s3cret@127.0.0.1:1/0"})
    assert down.returncode == 3, down.stdout + down.stderr
    assert "s3cret" not in down.stderr and "    at " not in down.stderr
