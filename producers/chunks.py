"""Splitting a batch file into batches: streamed, in bounded memory, under CATALOG_MAX_FILE_BYTES.

The one chunking path, for ``catalog enqueue --chunk-size`` and ``Producer.submit_file``. A
file is read twice: the first pass decodes and checks every record and counts the batches, so
a broken line 900,000 is found before anything is queued; the second pass sends. Neither pass
holds more than one batch of records. Standard input, which cannot be read twice, is first
copied to a temporary file, under the same limit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from catalog_core.errors import BatchTooLargeError, InputFileError
from catalog_core.settings import Settings
from producers.files import STDIN, BatchFile, is_jsonl, iter_records
from producers.reading import iter_bytes, iter_text

FILE_LIMIT_SETTING = "CATALOG_MAX_FILE_BYTES"


@dataclass(frozen=True)
class ChunkLimits:
    """Most records and bytes (as compact JSON) per batch, and most bytes in the whole file."""

    records: int
    batch_bytes: int
    file_bytes: int

    @classmethod
    def of(cls, settings: Settings, chunk_size: int) -> ChunkLimits:
        return cls(min(chunk_size, settings.max_batch_items), settings.max_batch_bytes, settings.max_file_bytes)


@dataclass(frozen=True)
class ChunkedFile:
    """A batch file seen as a sequence of batches; iterate it once per pass."""

    path: Path
    source: str
    limits: ChunkLimits

    def __iter__(self) -> Iterator[BatchFile]:
        records: list[object] = []
        lines: list[int] = []
        size = 2  # the brackets of the batch's JSON array
        pieces = iter_text(self.path, self.limits.file_bytes, FILE_LIMIT_SETTING)
        for record in iter_records(pieces, self.source, self.limits.batch_bytes, is_jsonl(self.source)):
            if record.size + 2 > self.limits.batch_bytes:
                raise BatchTooLargeError(
                    f"{self.source}, line {record.line}: one record is {record.size:,} bytes of JSON, over the "
                    f"{self.limits.batch_bytes:,}-byte batch limit (CATALOG_MAX_BATCH_BYTES)")
            if records and (len(records) >= self.limits.records or size + record.size + 1 > self.limits.batch_bytes):
                yield BatchFile(self.source, records, lines)
                records, lines, size = [], [], 2
            records.append(record.value)
            lines.append(record.line)
            size += record.size + 1
        yield BatchFile(self.source, records, lines)  # the last batch; the only one, empty, for "[]"

    def count(self, check: Callable[[BatchFile], None] | None = None) -> int:
        """First pass: decode every record, ``check`` each batch, count the batches; nothing is kept."""
        total = 0
        for batch in self:
            if check is not None:
                check(batch)
            total += 1
        return total


@contextmanager
def chunked_file(path: str | Path, limits: ChunkLimits) -> Iterator[ChunkedFile]:
    """A ``ChunkedFile`` for ``path``; standard input is spooled to a temporary file for the two passes."""
    source = str(path)
    if source != STDIN:
        yield ChunkedFile(Path(path), source, limits)
        return
    with tempfile.NamedTemporaryFile(prefix="catalog-stdin-", suffix=".json") as spool:
        for block in iter_bytes(STDIN, limits.file_bytes, FILE_LIMIT_SETTING):
            spool.write(block)
        spool.flush()
        yield ChunkedFile(Path(spool.name), source, limits)


def numbered(batches: Iterable[BatchFile], source: str, count: int, batch_id: str | None,
             new_id: Callable[[], str]) -> Iterator[tuple[int, str | None, BatchFile]]:
    """Second pass: (number, batch id, batch) for each of the ``count`` batches the first pass found.

    Ids: the given id for a single batch, ``ID.0001``... for several (a new ID when none is given).
    A file that changed between the passes is an error, not a silent mismatch of ids and records.
    """
    prefix = (batch_id or new_id()) if count > 1 else batch_id
    number = 0
    for number, batch in enumerate(batches, start=1):
        if number > count:
            break
        yield number, prefix if count == 1 else f"{prefix}.{number:04d}", batch
    if number != count:
        raise InputFileError(f"{source}: changed while it was being queued ({count} batches when checked, "
                             f"{'more' if number > count else number} now); queue it again")
