"""A batch goes all the way: producer (API or CLI) -> Redis -> a real `celery worker` -> catalog file."""

from __future__ import annotations

import orjson
import pytest

from tests.e2e.worker_fixtures import Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product, write_jsonl

pytestmark = pytest.mark.slow


def json_lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def test_a_batch_submitted_through_the_api_is_applied_by_a_worker_and_its_status_is_shown(stack: Stack) -> None:
    stack.seed([product("SEED-1", category="Tours")])
    stack.start_worker(1)

    handle = stack.producer.submit(
        [product("API-1"), product("API-2", destination_city="Dubai"),
         {"product_id": "SEED-1", "category": "Cruises", "description_short": "patched"}],
        source="e2e-api",
    )
    state = stack.wait(handle)

    assert state.result is not None, state
    assert state.result.status == "applied", state.result
    assert (state.result.created, state.result.updated, state.result.unchanged) == (2, 1, 0)
    assert state.result.backup is not None  # the seeded catalog was kept before being replaced
    catalog = stack.catalog()
    assert list(catalog) == ["SEED-1", "API-1", "API-2"]
    assert catalog["SEED-1"]["category"] == "Cruises"
    assert catalog["SEED-1"]["description_short"] == "patched"
    assert catalog["API-2"]["destination_city"] == "Dubai"

    shown = stack.cli("status", handle.batch_id, "--json")
    assert shown.returncode == 0, shown.stderr
    [payload] = json_lines(shown.stdout)
    assert payload["batch_id"] == handle.batch_id
    assert payload["status"] == "applied"
    assert (payload["created"], payload["updated"]) == (2, 1)

    human = stack.cli("status", handle.batch_id)
    assert human.returncode == 0, human.stderr
    assert "applied" in human.stdout and handle.batch_id in human.stdout


def test_catalog_enqueue_with_wait_prints_the_results_of_the_worker(stack: Stack) -> None:
    stack.start_worker(1)
    batch = write_jsonl(stack.tmp_path / "new.jsonl", [product("CLI-1"), product("CLI-2")])

    done = stack.cli("enqueue", str(batch), "--wait", "--timeout", "60", "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    [line] = json_lines(done.stdout)
    assert line["status"] == "applied"
    assert line["created"] == 2
    assert line["batch_id"].startswith("batch-")
    assert line["source"].endswith("new.jsonl")
    assert set(stack.catalog()) == {"CLI-1", "CLI-2"}


def test_catalog_enqueue_without_wait_prints_the_batch_id_which_status_then_follows(stack: Stack) -> None:
    stack.start_worker(1)
    batch = write_jsonl(stack.tmp_path / "one.jsonl", [product("CLI-Q")])

    queued = stack.cli("enqueue", str(batch), "--batch-id", "cli-queued-1")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert "cli-queued-1" in queued.stdout
    assert "queued" in queued.stdout

    queued_json = stack.cli("enqueue", str(write_jsonl(stack.tmp_path / "two.jsonl", [product("CLI-R")])), "--json")
    assert queued_json.returncode == 0, queued_json.stderr
    [line] = json_lines(queued_json.stdout)
    assert line["status"] == "queued" and line["records"] == 1
    second_id = line["batch_id"]

    for batch_id in ("cli-queued-1", second_id):
        state = stack.wait(stack.producer.handle(batch_id))
        assert state.result is not None and state.result.status == "applied", state
    assert {"CLI-Q", "CLI-R"} <= set(stack.catalog())


def test_catalog_enqueue_with_a_chunk_size_queues_one_batch_per_chunk_and_all_are_applied(stack: Stack) -> None:
    stack.start_worker(1)
    batch = write_jsonl(stack.tmp_path / "five.jsonl", [product(f"CHUNK-{n}") for n in range(5)])

    done = stack.cli("enqueue", str(batch), "--chunk-size", "2", "--batch-id", "chunked", "--wait",
                     "--timeout", "60", "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = json_lines(done.stdout)
    assert [line["batch_id"] for line in lines] == ["chunked.0001", "chunked.0002", "chunked.0003"]
    assert [line["status"] for line in lines] == ["applied"] * 3
    assert [line["created"] for line in lines] == [2, 2, 1]
    assert list(stack.catalog()) == [f"CHUNK-{n}" for n in range(5)]
