"""producers.files: reading batch files, with errors that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog_core.errors import BatchTooLargeError, InputFileError
from producers.files import parse_batch_text, read_batch_file

LIMIT = 1024 * 1024


def test_a_json_array_gives_its_records_and_the_line_each_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text('[\n  {"product_id": "A"},\n\n  {"product_id": "B",\n   "active": true}\n]\n')
    batch = read_batch_file(path, LIMIT)
    assert [r["product_id"] for r in batch.records] == ["A", "B"]
    assert batch.lines == [2, 4]


def test_a_single_json_object_is_a_batch_of_one(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('\n{"product_id": "A"}')
    batch = read_batch_file(path, LIMIT)
    assert batch.records == [{"product_id": "A"}]
    assert batch.lines == [2]


def test_jsonl_skips_blank_lines_and_comments_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text('# supplier feed\n{"product_id": "A"}\n\n{"product_id": "B"}\n')
    batch = read_batch_file(path, LIMIT)
    assert [r["product_id"] for r in batch.records] == ["A", "B"]
    assert batch.lines == [2, 4]
    assert batch.line_of(1) == 4 and batch.line_of(None) is None


def test_json_lines_are_detected_without_the_jsonl_suffix() -> None:
    batch = parse_batch_text('{"product_id": "A"}\n{"product_id": "B"}\n', "feed.txt")
    assert len(batch.records) == 2


def test_broken_jsonl_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text('{"product_id": "A"}\n{"product_id": "B",\n')
    with pytest.raises(InputFileError, match=r"batch\.jsonl, line 2, column \d+: invalid JSON"):
        read_batch_file(path, LIMIT)


def test_broken_json_array_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text('[\n {"product_id": "A"},\n {"product_id": }\n]')
    with pytest.raises(InputFileError, match=r"batch\.json, line 3"):
        read_batch_file(path, LIMIT)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="nope.jsonl: no such file"):
        read_batch_file(tmp_path / "nope.jsonl", LIMIT)


def test_a_folder_is_not_a_batch_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="folder"):
        read_batch_file(tmp_path, LIMIT)


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    path.write_text('{"product_id": "A"}\n' * 200)
    with pytest.raises(BatchTooLargeError, match="CATALOG_MAX_BATCH_BYTES"):
        read_batch_file(path, 1024)


def test_text_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"product_id": "A"}\n{"product_name": "caf\xe9"}\n')
    with pytest.raises(InputFileError, match="line 2: not UTF-8"):
        read_batch_file(path, LIMIT)


def test_a_json_scalar_is_not_a_batch() -> None:
    with pytest.raises(InputFileError, match="found int"):
        parse_batch_text("42", "x.json")


def test_nan_in_the_input_parses_so_that_validation_can_name_the_field() -> None:
    batch = parse_batch_text('{"product_id": "A", "pricing": [{"tier_name": "x", "price_aed": NaN}]}', "x.json")
    assert batch.records[0]["pricing"][0]["price_aed"] != batch.records[0]["pricing"][0]["price_aed"]
