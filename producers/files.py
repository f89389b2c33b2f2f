"""Reading batch files: a JSON array, a single JSON object, or JSON Lines.

Every record keeps the line it started on, so errors can name file, line, product and field.
Records are decoded one at a time from a bounded stream (producers/reading.py), so a file can
be split into batches without ever being held whole (producers/chunks.py). Anything a batch
could not carry is bad input naming file and line: duplicate keys, integers too large to
store, nesting too deep for the parser, strings JSON cannot encode.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from catalog_core.errors import InputFileError
from producers.reading import STDIN, iter_text

JSONL_SUFFIXES = {".jsonl", ".ndjson"}
JSON_SPACE = " \t\r\n"
# 2**64 has 20 digits: a longer integer cannot be stored in a batch or the catalog anyway, and
# stopping here spares Python's int() the 4,300-digit ValueError.
MAX_INTEGER_DIGITS = 20

__all__ = ["STDIN", "BatchFile", "Record", "iter_records", "parse_batch_text", "read_batch_file"]


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


@dataclass(frozen=True)
class Record:
    """One decoded record, the line it starts on, and its size as compact JSON."""

    value: Any
    line: int
    size: int


class _Refused(ValueError):
    """A decoded value that must not enter a batch; raised from the decoder's hooks."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r} in one object (which value is meant?)")
            seen.add(key)
    return obj


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _Refused(f"an integer of {len(digits.lstrip('-')):,} digits is too large")
    return int(digits)


# The standard library's decoder, not orjson: orjson has no hook to see duplicate keys, and it
# refuses NaN, which batch files may carry so that validation can name the field. Its own
# limits (4,300-digit ints, recursion) would surface as ValueError/RecursionError: caught below.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_int=_bounded_int)


class _Cursor:
    """A window on the decoded text: grows from the stream as needed, forgets what was consumed."""

    def __init__(self, pieces: Iterable[str], source: str, record_limit: int) -> None:
        self.pieces = iter(pieces)
        self.source = source
        self.record_limit = record_limit
        self.text = ""
        self.pos = 0
        # Lines are counted once, moving forward: the line number at text position _mark.
        self._mark = 0
        self._mark_line = 1
        self._column_offset = 0  # characters of text[0]'s line that were already dropped
        self.exhausted = False
        self.last_start = 0  # where the last decoded value began in self.text

    def more(self) -> bool:
        """Pull the next piece, dropping consumed text. False at the end of the input."""
        self._drop(self.pos)
        for piece in self.pieces:
            if piece:
                self.text += piece
                return True
        self.exhausted = True
        return False

    def start_at_line(self, line: int, column_offset: int = 0) -> None:
        self._mark, self._mark_line, self._column_offset = 0, line, column_offset

    def column_at(self, pos: int) -> int:
        line_start = self.text.rfind("\n", 0, pos) + 1
        return pos - line_start + 1 + (self._column_offset if line_start == 0 else 0)

    def line_at(self, pos: int) -> int:
        if pos >= self._mark:
            self._mark_line += self.text.count("\n", self._mark, pos)
            self._mark = pos
            return self._mark_line
        return self._mark_line - self.text.count("\n", pos, self._mark)

    def _drop(self, length: int) -> None:
        """Forget the first ``length`` characters (consumed), keeping the line count right."""
        line = self.line_at(length)
        self._column_offset = self.column_at(length) - 1
        self.text, self.pos = self.text[length:], self.pos - length
        self._mark, self._mark_line = 0, line

    def peek(self) -> str:
        """The next character that is not JSON white space; "" at the end."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in JSON_SPACE:
                self.pos += 1
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos : self.pos + 1]

    def fail(self, pos: int, message: str, column: bool = False) -> InputFileError:
        where = f"line {self.line_at(pos)}"
        if column:
            where += f", column {self.column_at(pos)}"
        return InputFileError(f"{self.source}, {where}: {message}")

    def value(self) -> Record:
        """Decode the JSON value at the cursor, reading more of the stream while it is incomplete."""
        self.peek()
        start = self.pos
        while True:
            self.last_start = start
            try:
                value, end = _DECODER.raw_decode(self.text, start)
                break
            except json.JSONDecodeError as exc:
                if len(self.text) - start > self.record_limit:
                    raise self.fail(start, f"a record over the {self.record_limit:,}-byte batch limit, or "
                                    f"invalid JSON ({exc.msg})") from None
                if self.exhausted or not self._grow(start):
                    raise self.fail(exc.pos, f"invalid JSON ({exc.msg})", column=True) from None
                start = 0
            except _Refused as exc:
                raise self.fail(start, str(exc)) from None
            except RecursionError:
                raise self.fail(start, "nested too deeply (a product needs only a few levels)") from None
        record = self._checked(value, start)
        self.pos = end
        return record

    def _grow(self, start: int) -> bool:
        """Double the undecoded text, moving it to the front; O(n log n) decoding in all, however it is cut."""
        wanted = 2 * (len(self.text) - start) + 1
        added: list[str] = []
        while len(self.text) - start + sum(map(len, added)) < wanted and (piece := next(self.pieces, None)) is not None:
            added.append(piece)
        if not added:
            self.exhausted = True
            return False
        self._drop(start)
        self.text += "".join(added)
        return True

    def _checked(self, value: Any, start: int) -> Record:
        try:
            size = len(orjson.dumps(value))
        except orjson.JSONEncodeError as exc:
            raise self.fail(start, f"cannot be stored as JSON ({exc})") from None
        return Record(value, self.line_at(start), size)


def _array_records(cursor: _Cursor) -> Iterator[Record]:
    cursor.pos += 1  # past "["
    if cursor.peek() == "]":
        cursor.pos += 1
        return
    while True:
        if cursor.peek() == "":
            raise cursor.fail(cursor.pos, "the array is not closed (the input ends inside it)")
        yield cursor.value()
        following = cursor.peek()
        cursor.pos += 1
        if following == "]":
            return
        if following != ",":
            raise cursor.fail(cursor.pos - 1, "invalid JSON (expecting ',' or ']' after a record)")


def _line_records(pieces: Iterable[str], source: str, record_limit: int, first_line: int = 1) -> Iterator[Record]:
    """JSON Lines, split on "\\n" only: U+2028 or U+0085 inside a string are text, not line ends."""
    pending = ""
    number = first_line - 1
    for piece in _with_final_newline(pieces):
        pending += piece
        *complete, pending = pending.split("\n")
        if len(pending) > record_limit:
            raise InputFileError(f"{source}, line {number + len(complete) + 1}: a line over the "
                                 f"{record_limit:,}-byte batch limit")
        for raw in complete:
            number += 1
            stripped = raw.strip(JSON_SPACE)
            if not stripped or stripped.startswith("#"):
                continue
            cursor = _Cursor([stripped], source, record_limit)
            cursor.start_at_line(number, column_offset=len(raw) - len(raw.lstrip(JSON_SPACE)))
            record = cursor.value()
            if cursor.peek():
                raise cursor.fail(cursor.pos, "invalid JSON (Extra data after the record)", column=True)
            yield record


def _with_final_newline(pieces: Iterable[str]) -> Iterator[str]:
    yield from pieces
    yield "\n"


def iter_records(pieces: Iterable[str], source: str, record_limit: int, jsonl: bool | None = None) -> Iterator[Record]:
    """Records of a batch text given in pieces; ``jsonl=None`` detects the format from the content."""
    if jsonl:
        yield from _line_records(pieces, source, record_limit)
        return
    cursor = _Cursor(pieces, source, record_limit)
    first = cursor.peek()
    if first == "[":
        yield from _array_records(cursor)
    elif first == "#" and jsonl is None:
        yield from _rest_as_lines(cursor, source, record_limit)
        return
    else:
        record = cursor.value() if first else None
        if record is None or not isinstance(record.value, dict):
            kind = "an empty file" if record is None else type(record.value).__name__
            raise InputFileError(f"{source}: a batch is a JSON array of records, one record, or JSON Lines; "
                                 f"found {kind}")
        if cursor.peek() and jsonl is None:
            # More after one object: JSON Lines without the suffix. Start over from that object.
            cursor.pos = cursor.last_start
            yield from _rest_as_lines(cursor, source, record_limit)
            return
        yield record
    if cursor.peek():
        raise cursor.fail(cursor.pos, "invalid JSON (Extra data after the batch)")


def _rest_as_lines(cursor: _Cursor, source: str, record_limit: int) -> Iterator[Record]:
    rest = cursor.text[cursor.pos :]
    line = cursor.line_at(cursor.pos)
    yield from _line_records(_chain(rest, cursor.pieces), source, record_limit, first_line=line)


def _chain(first: str, pieces: Iterator[str]) -> Iterator[str]:
    yield first
    yield from pieces


def is_jsonl(source: str) -> bool | None:
    return True if Path(source).suffix.lower() in JSONL_SUFFIXES else None


def parse_batch_text(text: str, source: str, jsonl: bool | None = None) -> BatchFile:
    """Parse batch text that is already in memory; ``jsonl=None`` detects the format from the content."""
    records = list(iter_records([text], source, max(len(text), 1) * 4, jsonl))
    return BatchFile(source, [r.value for r in records], [r.line for r in records])


def read_batch_file(path: str | Path, max_bytes: int) -> BatchFile:
    """Read and parse one batch file (``-`` is standard input), refusing input over ``max_bytes``."""
    source = str(path)
    setting = "CATALOG_MAX_BATCH_BYTES"
    records = list(iter_records(iter_text(path, max_bytes, setting), source, max_bytes, is_jsonl(source)))
    return BatchFile(source, [r.value for r in records], [r.line for r in records])
