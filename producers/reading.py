"""Bounded reading of batch input: regular files and standard input only, never past a byte limit.

The size a file reports is only a first check: devices, /proc files and files still being
written can report anything, so the limit holds while reading too (at most limit + 1 bytes are
ever read). FIFOs, sockets and devices are refused after a ``stat``, before any ``open`` that
could block waiting for a writer.
"""

from __future__ import annotations

import codecs
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from catalog_core.errors import BatchTooLargeError, InputFileError

STDIN = "-"
BLOCK_BYTES = 1024 * 1024
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}


def _refuse_unless_regular(source: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise InputFileError(f"{source}: is a folder, not a batch file")
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a plain file")
        raise InputFileError(f"{source}: not a regular file ({kind}); give a file, or '-' for standard input")


def too_large(source: str, limit: int, setting: str, size: int | None = None) -> BatchTooLargeError:
    what = f"{size:,} bytes, over" if size is not None else "over"
    return BatchTooLargeError(f"{source}: {what} the {limit:,}-byte limit ({setting}); split it into smaller batches")


@contextmanager
def open_input(path: str | Path, limit: int, setting: str) -> Iterator[BinaryIO]:
    """Standard input for ``-``; otherwise a regular file no larger than ``limit``, opened without blocking."""
    source = str(path)
    if source == STDIN:
        yield sys.stdin.buffer
        return
    try:
        _refuse_unless_regular(source, os.stat(path).st_mode)
        # O_NONBLOCK: if the name was swapped for a FIFO since the stat, open must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputFileError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputFileError(f"{source}: cannot read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        _refuse_unless_regular(source, info.st_mode)  # the name may have changed since the stat
        if info.st_size > limit:
            raise too_large(source, limit, setting, info.st_size)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb", buffering=0) as handle:
        yield handle


def iter_bytes(path: str | Path, limit: int, setting: str) -> Iterator[bytes]:
    """The input in blocks; ``BatchTooLargeError`` as soon as more than ``limit`` bytes arrive."""
    source = str(path)
    total = 0
    with open_input(path, limit, setting) as handle:
        while True:
            try:
                block = handle.read(min(BLOCK_BYTES, limit + 1 - total))
            except OSError as exc:
                raise InputFileError(f"{source}: cannot read ({exc.strerror})") from None
            if not block:
                return
            total += len(block)
            if total > limit:
                raise too_large(source, limit, setting)
            yield block


def iter_text(path: str | Path, limit: int, setting: str) -> Iterator[str]:
    """The input decoded as UTF-8 (a leading BOM is dropped), in pieces; bad bytes are named by line."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    lines_before = 0
    for block in iter_bytes(path, limit, setting):
        try:
            yield decoder.decode(block)
        except UnicodeDecodeError as exc:
            line = lines_before + block[: exc.start].count(b"\n") + 1
            raise InputFileError(f"{path}, line {line}: not UTF-8 text") from None
        lines_before += block.count(b"\n")
    try:
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputFileError(f"{path}, line {lines_before + 1}: not UTF-8 text (cut off at the end)") from None
