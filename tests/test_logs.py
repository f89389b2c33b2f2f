"""catalog_core.logs: the JSON format, the batch's fields on its lines, and passwords masked in both formats."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from catalog_core.logs import JsonFormatter, MaskingFormatter, batch_context, formatter_for, mask_urls, url_secrets
from tests.conftest import CliRunner
from tests.helpers import product, write_jsonl


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("catalog.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_every_url_password_in_a_line_is_masked() -> None:
    # Expected strings written by hand.
    assert mask_urls("to redis://:s3cret@h:1/0 and rediss://app:pw@h/2") == "to redis://:**@h:1/0 and rediss://app:**@h/2"
    assert mask_urls("lone redis://s3cret@h/0") == "lone redis://**@h/0"
    assert mask_urls("unix:///s.sock?db=1&password=s3cret end") == "unix:///s.sock?db=1&password=** end"
    assert mask_urls("no url here: a@b") == "no url here: a@b"


def test_a_json_line_has_the_batch_fields_of_its_context_and_of_extra() -> None:
    formatter = JsonFormatter()
    with batch_context(batch_id="b-1", sequence=7, source="feed"):
        line = orjson.loads(formatter.format(record("applied %s", "b-1", fence=3)))
    assert line["message"] == "applied b-1"
    assert (line["batch_id"], line["sequence"], line["source"], line["fence"]) == ("b-1", 7, "feed", 3)
    assert line["level"] == "WARNING" and line["logger"] == "catalog.test"
    outside = orjson.loads(formatter.format(record("idle")))
    assert "batch_id" not in outside


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_known_password_is_masked_even_bare_and_in_a_traceback(log_format: str) -> None:
    secrets = url_secrets(["redis://:hunter22@h:1/0"])
    formatter = formatter_for(log_format, secrets)
    assert isinstance(formatter, MaskingFormatter)
    try:
        raise ValueError("auth failed with hunter22")
    except ValueError:
        import sys
        failing = logging.LogRecord("x", logging.ERROR, __file__, 1, "password was %s", ("hunter22",), sys.exc_info())
    text = formatter.format(failing)
    assert "hunter22" not in text and "**" in text


def test_the_cli_logs_one_json_object_per_line_with_the_batch_id(run_cli: CliRunner, tmp_path: Path) -> None:
    batch = write_jsonl(tmp_path / "b.jsonl", [product("L-1")])
    done = run_cli("-v", "apply", str(batch), "--batch-id", "cli-json-1", env={"CATALOG_LOG_FORMAT": "json"})
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in done.stderr.splitlines() if line.strip()]  # each one parses
    mine = [line for line in lines if line.get("batch_id") == "cli-json-1"]
    assert mine and mine[0]["source"] == str(batch)
