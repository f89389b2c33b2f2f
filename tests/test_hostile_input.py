"""Hostile input through the real ``catalog`` command: bounded memory, no hang, exit 2, never a traceback."""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis

from catalog_core.settings import Settings
from tests.helpers import cli_env

ADDRESS_SPACE_CAP = 1024 * 1024 * 1024  # far above what a refused input may cost; /dev/zero used to reach GBs


def run_capped(settings: Settings, *args: str, timeout: float = 60, stdin: object = None) -> subprocess.CompletedProcess[str]:
    """``catalog`` in a subprocess whose memory is capped, so an unbounded read fails instead of eating the machine."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))

    return subprocess.run(
        [sys.executable, "-m", "catalog_cli", *args], capture_output=True, text=True, timeout=timeout,
        env=cli_env(settings), preexec_fn=cap_memory, stdin=stdin if stdin is not None else subprocess.DEVNULL,
    )


@pytest.fixture
def settings(catalog_path: Path) -> Settings:
    from catalog_core.settings import load_settings

    return load_settings(path=catalog_path, redis_url="redis://127.0.0.1:1/0")


def assert_bad_input(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]


def test_validate_refuses_a_device_without_reading_it(settings: Settings) -> None:
    assert_bad_input(run_capped(settings, "validate", "/dev/zero"), "/dev/zero", "not a regular file")


def test_validate_refuses_a_fifo_without_waiting_for_a_writer(settings: Settings, tmp_path: Path) -> None:
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    try:
        result = run_capped(settings, "validate", str(fifo), timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("catalog validate blocked on a FIFO with no writer")
    assert_bad_input(result, "feed.jsonl", "not a regular file")


def test_standard_input_is_read_only_up_to_the_byte_limit(settings: Settings) -> None:
    with open("/dev/zero", "rb") as endless:
        result = run_capped(settings, "validate", "-", stdin=endless)
    assert_bad_input(result, "CATALOG_MAX_BATCH_BYTES")


def test_an_integer_of_five_thousand_digits_is_bad_input_naming_file_and_line(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "digits.json"
    path.write_text('[\n  {"product_id": "A",\n   "duration_hours": ' + "7" * 5000 + "}\n]\n")
    assert_bad_input(run_capped(settings, "validate", str(path)), "digits.json, line 2")


def test_a_hundred_thousand_nested_brackets_are_bad_input_naming_file_and_line(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert_bad_input(run_capped(settings, "validate", str(path)), "deep.json, line 1")


def test_a_duplicate_key_is_bad_input_naming_file_line_and_key(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "twice.jsonl"
    path.write_text('{"product_id": "A"}\n{"product_id": "B", "product_id": "C"}\n')
    assert_bad_input(run_capped(settings, "validate", str(path)), "twice.jsonl, line 2", "'product_id'")


HOSTILE_TEXT = ("\x1b[2J", "\x1b]0;pwned\x07", "\u202e", "\u200b", "\r")


def assert_nothing_raw(output: str) -> None:
    for raw in HOSTILE_TEXT:
        assert raw not in output, f"{raw!r} reached the terminal: {output[-1500:]!r}"


def test_control_and_bidi_characters_in_records_are_printed_escaped(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "evil.jsonl"
    record = {"product_id": "A\x1b[2J\u200b", "evil\x1b]0;pwned\x07": 1, "category": 5, "product_name": "x\u202e\r"}
    path.write_text(json.dumps(record) + "\n")
    result = run_capped(settings, "validate", str(path))
    assert result.returncode == 1, result.stderr
    assert_nothing_raw(result.stdout + result.stderr)
    assert "A\\x1b[2J\\u200b" in result.stdout and "evil\\x1b]0;pwned\\x07" in result.stdout


def test_control_characters_in_a_file_name_are_printed_escaped_in_errors(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "feed\x1b[31m\u202e.jsonl"
    path.write_text('{"product_id": "A"}\n{"product_id": \n')
    result = run_capped(settings, "validate", str(path))
    assert_bad_input(result, "feed\\x1b[31m\\u202e.jsonl, line 2")
    assert_nothing_raw(result.stdout + result.stderr)


MEMORY_PROBE = """
import json, resource, sys
from catalog_core.errors import CatalogError
from catalog_core.settings import load_settings
from producers.api import Producer

def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

producer = Producer(load_settings())
before = peak()
outcome = "queued"
try:
    handles = producer.submit_file(sys.argv[1], chunk_size=int(sys.argv[2]))
except CatalogError as exc:
    outcome, handles = f"{type(exc).__name__}: {exc}", []
print(json.dumps({"growth": peak() - before, "outcome": outcome, "batches": [h.batch_id for h in handles],
                  "records": [h.records for h in handles]}))
"""


def write_big_jsonl(path: Path, target_bytes: int) -> int:
    """A JSON Lines file of about ``target_bytes`` of valid new products; returns the record count."""
    filler = "x" * 200
    count = 0
    with path.open("w") as handle:
        while handle.tell() < target_bytes:
            handle.write(json.dumps({"product_id": f"P{count}", "product_name": f"Product {count}", "pricing": [],
                                     "inclusions": [], "description_long": filler}) + "\n")
            count += 1
    return count


def probe_memory(env: dict[str, str], path: Path, chunk_size: int) -> dict:
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * ADDRESS_SPACE_CAP, 2 * ADDRESS_SPACE_CAP))

    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(chunk_size)], capture_output=True,
                          text=True, timeout=600, env=env, preexec_fn=cap_memory)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


BATCH_BYTES = 2 * 1024 * 1024
MEMORY_SLACK = 64 * 1024 * 1024  # a few chunks of decoded records, the read buffer, the decoder


def test_chunking_a_100_mb_file_reads_it_all_in_bounded_memory(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    write_big_jsonl(path, 100 * 1024 * 1024)
    env = cli_env(settings, CATALOG_MAX_BATCH_BYTES=str(BATCH_BYTES), CATALOG_MAX_FILE_BYTES=str(200 * 1024 * 1024))
    report = probe_memory(env, path, chunk_size=5000)
    # Redis is unreachable: the whole file is read and checked before the first send fails.
    assert report["outcome"].startswith("RedisUnavailableError"), report["outcome"]
    print(f"peak RSS growth {report['growth'] / 2**20:.1f} MiB")
    assert report["growth"] < MEMORY_SLACK, f"peak RSS grew {report['growth'] / 2**20:.0f} MiB"


def test_chunked_file_is_queued_in_order_in_batches_within_the_byte_limit_in_bounded_memory(
    redis_url: str, catalog_path: Path, tmp_path: Path
) -> None:
    from catalog_core.settings import load_settings

    path = tmp_path / "feed.jsonl"
    count = write_big_jsonl(path, 24 * 1024 * 1024)
    real = load_settings(path=catalog_path, redis_url=redis_url)
    env = cli_env(real, CATALOG_MAX_BATCH_BYTES=str(256 * 1024), CATALOG_MAX_FILE_BYTES=str(64 * 1024 * 1024))
    report = probe_memory(env, path, chunk_size=100_000)
    assert report["outcome"] == "queued", report["outcome"]
    assert sum(report["records"]) == count and len(report["batches"]) > 24 * 3
    print(f"peak RSS growth {report['growth'] / 2**20:.1f} MiB")
    assert report["growth"] < MEMORY_SLACK, f"peak RSS grew {report['growth'] / 2**20:.0f} MiB"
    client = redis.Redis.from_url(redis_url)
    queued = client.lrange(real.queue, 0, -1)[::-1]  # LPUSHed: oldest last
    ids: list[str] = []
    for raw in queued:
        body = base64.b64decode(json.loads(raw)["body"])
        assert len(body) < 2 * 256 * 1024
        [message], _kwargs, _embed = json.loads(body)
        assert len(orjson.dumps(message["items"])) <= 256 * 1024
        ids.extend(item["product_id"] for item in message["items"])
    assert ids == [f"P{n}" for n in range(count)]


def test_enqueue_refuses_a_file_over_the_file_limit_and_queues_nothing(
    redis_url: str, catalog_path: Path, tmp_path: Path
) -> None:
    from catalog_core.settings import load_settings

    path = tmp_path / "feed.jsonl"
    write_big_jsonl(path, 3 * 1024 * 1024)
    real = load_settings(path=catalog_path, redis_url=redis_url)
    result = subprocess.run(
        [sys.executable, "-m", "catalog_cli", "enqueue", str(path), "--chunk-size", "100"], capture_output=True,
        text=True, timeout=120, env=cli_env(real, CATALOG_MAX_FILE_BYTES=str(2 * 1024 * 1024)),
    )
    assert_bad_input(result, "feed.jsonl", "CATALOG_MAX_FILE_BYTES")
    assert redis.Redis.from_url(redis_url).llen(real.queue) == 0


def test_enqueue_with_a_chunk_size_splits_a_file_larger_than_one_batch(
    redis_url: str, catalog_path: Path, tmp_path: Path
) -> None:
    from catalog_core.settings import load_settings

    path = tmp_path / "feed.jsonl"
    count = write_big_jsonl(path, 1024 * 1024)
    real = load_settings(path=catalog_path, redis_url=redis_url)
    result = subprocess.run(
        [sys.executable, "-m", "catalog_cli", "enqueue", str(path), "--chunk-size", "1000", "--json"],
        capture_output=True, text=True, timeout=120, env=cli_env(real, CATALOG_MAX_BATCH_BYTES=str(128 * 1024)),
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sum(line["records"] for line in lines) == count and len(lines) >= 8
    assert redis.Redis.from_url(redis_url).llen(real.queue) == len(lines)


def test_enqueue_with_a_chunk_size_splits_standard_input_too(redis_url: str, catalog_path: Path) -> None:
    from catalog_core.settings import load_settings

    real = load_settings(path=catalog_path, redis_url=redis_url)
    feed = "".join(json.dumps({"product_id": f"S{n}"}) + "\n" for n in range(5))
    result = subprocess.run(
        [sys.executable, "-m", "catalog_cli", "enqueue", "-", "--chunk-size", "2", "--batch-id", "stdin", "--json"],
        input=feed, capture_output=True, text=True, timeout=120, env=cli_env(real),
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["batch_id"], line["records"]) for line in lines] == [("stdin.0001", 2), ("stdin.0002", 2),
                                                                       ("stdin.0003", 1)]


def test_a_chunked_file_broken_near_its_end_queues_nothing(redis_url: str, catalog_path: Path, tmp_path: Path) -> None:
    from catalog_core.errors import BatchRefusedError, InputFileError
    from catalog_core.settings import load_settings
    from producers.api import Producer

    real = load_settings(path=catalog_path, redis_url=redis_url)
    records = [json.dumps({"product_id": f"P{n}"}) for n in range(50)]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(records) + '\n{"product_id": \n')
    refused = tmp_path / "refused.jsonl"
    refused.write_text("\n".join(records) + '\n{"product_id": "Z", "prcing": []}\n')
    producer = Producer(real)
    with pytest.raises(InputFileError, match="broken.jsonl, line 51"):
        producer.submit_file(broken, chunk_size=10)
    with pytest.raises(BatchRefusedError):
        producer.submit_file(refused, chunk_size=10)
    assert redis.Redis.from_url(redis_url).llen(real.queue) == 0
    result = subprocess.run([sys.executable, "-m", "catalog_cli", "enqueue", str(broken), "--chunk-size", "10"],
                            capture_output=True, text=True, timeout=120, env=cli_env(real))
    assert_bad_input(result, "broken.jsonl, line 51")
    assert redis.Redis.from_url(redis_url).llen(real.queue) == 0


@pytest.mark.parametrize("command", ["verify", "stats", "validate"])
def test_a_catalog_path_that_is_a_device_or_folder_is_a_clear_error(settings: Settings, tmp_path: Path,
                                                                    command: str) -> None:
    batch = tmp_path / "a.jsonl"
    batch.write_text('{"product_id": "A"}\n')
    extra = [str(batch)] if command == "validate" else []
    for catalog in ("/dev/zero", str(tmp_path)):
        result = run_capped(settings, command, *extra, "--catalog", catalog)
        assert result.returncode in (2, 3), (catalog, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and catalog in result.stderr, (catalog, result.stderr[-2000:])
