"""Hostile input through the real ``catalog`` command: bounded memory, no hang, exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

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
