"""Reading batch files: a JSON array, a single JSON object, or JSON Lines.

Every record keeps the line it started on, so errors can name file, line, product and field.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalog_core.errors import BatchTooLargeError, InputFileError

JSONL_SUFFIXES = {".jsonl", ".ndjson"}
STDIN = "-"


@dataclass(frozen=True)
class BatchFile:
    """The records of one batch file, with the line each one starts on."""

    source: str
    records: list[Any]
    lines: list[int]

    def line_of(self, index: int | None) -> int | None:
        if index is None or not 0 <= index < len(self.lines):
            return None
        return self.lines[index]


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _array_lines(text: str) -> list[int]:
    """Line on which each element of a (valid) top-level JSON array starts."""
    decoder = json.JSONDecoder()
    lines: list[int] = []
    pos = _skip_space(text, 0) + 1  # past "["
    line, counted_to = 1, 0
    while True:
        pos = _skip_space(text, pos)
        if text[pos] == "]":
            return lines
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip_space(text, pos)
        if text[pos] == ",":
            pos += 1


def _parse_jsonl(text: str, source: str) -> BatchFile:
    records, lines = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            records.append(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{source}, line {number}, column {exc.colno}: invalid JSON ({exc.msg})") from None
        lines.append(number)
    return BatchFile(source, records, lines)


def parse_batch_text(text: str, source: str, jsonl: bool | None = None) -> BatchFile:
    """Parse batch text; ``jsonl=None`` detects the format from the content."""
    if jsonl:
        return _parse_jsonl(text, source)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        looks_like_lines = exc.msg == "Extra data" and text.lstrip().startswith("{")
        if jsonl is None and looks_like_lines:
            return _parse_jsonl(text, source)
        raise InputFileError(
            f"{source}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})"
        ) from None
    if isinstance(document, list):
        return BatchFile(source, document, _array_lines(text))
    if isinstance(document, dict):
        return BatchFile(source, [document], [text.count("\n", 0, _skip_space(text, 0)) + 1])
    raise InputFileError(f"{source}: a batch is a JSON array of records, one record, or JSON Lines; found {type(document).__name__}")


def read_batch_file(path: str | Path, max_bytes: int) -> BatchFile:
    """Read and parse one batch file (``-`` is standard input), refusing files over ``max_bytes``."""
    source = str(path)
    try:
        if source == STDIN:
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            file_path = Path(path)
            size = file_path.stat().st_size
            if size > max_bytes:
                raise BatchTooLargeError(
                    f"{source}: {size:,} bytes, over the {max_bytes:,}-byte limit (CATALOG_MAX_BATCH_BYTES); "
                    "split it into smaller batches"
                )
            data = file_path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{source}: is a folder, not a batch file") from None
    except OSError as exc:
        raise InputFileError(f"{source}: cannot read ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise BatchTooLargeError(f"{source}: over the {max_bytes:,}-byte limit (CATALOG_MAX_BATCH_BYTES)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFileError(f"{source}, line {line}: not UTF-8 text (byte {exc.start})") from None
    jsonl = True if Path(source).suffix.lower() in JSONL_SUFFIXES else None
    return parse_batch_text(text, source, jsonl=jsonl)
