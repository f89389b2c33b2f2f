"""producers.files: reading batch files, with errors that name file and line."""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path

import pytest

from catalog_core.errors import BatchTooLargeError, InputFileError
from producers.chunks import ChunkedFile, ChunkLimits, numbered
from producers.files import iter_records, parse_batch_text, read_batch_file

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


def test_json_lines_split_only_on_newline_so_u2028_and_nel_stay_inside_a_string(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text('{"product_id": "A", "product_name": "one\u2028two\x85three"}\r\n{"product_id": "B"}\n',
                    encoding="utf-8", newline="")
    batch = read_batch_file(path, LIMIT)
    assert [r["product_id"] for r in batch.records] == ["A", "B"]
    assert batch.records[0]["product_name"] == "one\u2028two\x85three"
    assert batch.lines == [1, 2]


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("batch.json", '[\n  {"product_id": "A"},\n  {"product_id": "B", "active": true,\n   "product_id": "C"}\n]', 3),
        ("batch.jsonl", '{"product_id": "A"}\n{"product_id": "B", "pricing": [{"tier_name": "x", "tier_name": "y"}]}\n', 2),
        ("one.json", '\n{"product_id": "A", "category": "x", "category": "y"}', 2),
    ],
)
def test_a_key_given_twice_in_one_object_is_refused_and_named(tmp_path: Path, name: str, text: str, line: int) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputFileError, match=rf"{name}, line {line}.*duplicate key") as info:
        read_batch_file(path, LIMIT)
    assert ("'product_id'" in str(info.value)) or ("'tier_name'" in str(info.value)) or ("'category'" in str(info.value))


@pytest.mark.parametrize("name", ["batch.json", "batch.jsonl"])
def test_an_integer_of_thousands_of_digits_is_bad_input_with_its_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    record = '{"product_id": "A", "duration_hours": ' + "9" * 5000 + "}"
    path.write_text(f'[\n{{"product_id": "Z"}},\n{record}\n]' if name.endswith(".json") else '{"product_id": "Z"}\n' + record)
    with pytest.raises(InputFileError, match=rf"{name}, line [23]\b.*(digits|too large)"):
        read_batch_file(path, LIMIT)


@pytest.mark.parametrize("name", ["deep.json", "deep.jsonl"])
def test_nesting_a_hundred_thousand_levels_deep_is_bad_input_with_its_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text('{"product_id": "Z"}\n' + "[" * 100_000 if name.endswith("l") else "[\n" + "[" * 100_000)
    with pytest.raises(InputFileError, match=rf"{name}, line 2\b.*nest"):
        read_batch_file(path, LIMIT)


def test_a_lone_surrogate_that_json_cannot_store_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text('{"product_id": "A\\ud800"}\n')
    with pytest.raises(InputFileError, match=r"batch\.jsonl, line 1"):
        read_batch_file(path, LIMIT)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []
    reader = threading.Thread(target=lambda: outcome.append(_error_of(lambda: read_batch_file(fifo, LIMIT))),
                              daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the stuck reader so the test run can go on
        with open(fifo, "wb"):
            pass
        reader.join(timeout=10)
        pytest.fail("reading a FIFO blocked waiting for a writer")
    assert isinstance(outcome[0], InputFileError) and "not a regular file" in str(outcome[0])


def test_a_character_device_is_refused_before_any_read() -> None:
    with pytest.raises(InputFileError, match="not a regular file"):
        read_batch_file("/dev/null", LIMIT)


def test_the_byte_limit_holds_while_reading_even_when_the_size_lies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "grows.jsonl"
    path.write_text('{"product_id": "A"}\n' * 200)
    real_stat = os.stat

    def shrunk(target: object, *args: object, **kwargs: object) -> os.stat_result:
        result = real_stat(target, *args, **kwargs)  # type: ignore[arg-type]
        fields = list(result)
        fields[6] = 10  # st_size, as a file still being written (or /proc) may report
        return os.stat_result(fields)

    monkeypatch.setattr(os, "stat", shrunk)
    monkeypatch.setattr(os, "fstat", lambda fd: shrunk(f"/proc/self/fd/{fd}"))
    with pytest.raises(BatchTooLargeError, match="CATALOG_MAX_BATCH_BYTES"):
        read_batch_file(path, 1024)


def _error_of(action: object) -> BaseException | None:
    try:
        action()  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001 - the test inspects whatever came out
        return exc
    return None


STREAMED_TEXTS = [
    "[\n" + ",\n".join(json.dumps({"product_id": f"P{n}", "product_name": "x" * (n * 7 % 90)}, indent=2)
                       for n in range(40)) + "\n]\n",
    "".join(json.dumps({"product_id": f"P{n}", "inclusions": ["a\u2028b"] * (n % 4)}) + "\n" for n in range(40)),
    '\n\n{"product_id": "ONE",\n "category": "Tour"}\n',
    '[\n  {"product_id": "A"},\n  {"product_id": "B", "pricing": [}\n]\n',
    '{"product_id": "A"}\n{"product_id": "B", "product_id": "C"}\n',
]


@pytest.mark.parametrize("text", STREAMED_TEXTS)
def test_records_and_errors_are_the_same_however_the_stream_is_cut(text: str) -> None:
    def outcome(pieces: list[str]) -> tuple[str, object]:
        try:
            return "records", [(r.line, r.value) for r in iter_records(pieces, "feed", 10**6)]
        except InputFileError as exc:
            return "error", str(exc)

    whole = outcome([text])
    chooser = random.Random(7)
    for _ in range(50):
        cuts = sorted(chooser.sample(range(1, len(text)), chooser.randint(1, 12)))
        assert outcome([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]) == whole


def test_a_file_that_changes_between_the_check_and_the_send_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text("".join(json.dumps({"product_id": f"P{n}"}) + "\n" for n in range(5)))
    chunks = ChunkedFile(path, str(path), ChunkLimits(records=2, batch_bytes=LIMIT, file_bytes=LIMIT))
    count = chunks.count()
    assert count == 3
    assert [(n, i, len(b.records)) for n, i, b in numbered(chunks, "feed", count, "X", lambda: "new")] == [
        (1, "X.0001", 2), (2, "X.0002", 2), (3, "X.0003", 1)]
    with path.open("a") as grown:
        grown.write(json.dumps({"product_id": "LATE"}) + "\n" * 2 + json.dumps({"product_id": "LATER"}) + "\n")
    with pytest.raises(InputFileError, match="changed while it was being queued"):
        list(numbered(chunks, "feed", count, "X", lambda: "new"))
