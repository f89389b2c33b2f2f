"""Atomic replacement of a file: readers see the old version or the new one, never a mix."""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from catalog_core.errors import CommitError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
IOV_MAX = 1024  # buffers one writev takes (Linux's limit)
# Backups beside the catalog are what usually fills its disk: say where to look.
FULL_DISK_HINT = (". The disk is full: `catalog backups list` shows what the backups take, "
                  "`catalog backups rotate` thins and compresses them")
TEMP_TOKEN_LENGTH = 8


def temp_prefix(path: Path) -> str:
    """Temp files are hidden siblings, so they share the catalog's file system and rename atomically."""
    return f".{path.name}."


def _temp_name_pattern(path: Path) -> re.Pattern[str]:
    # Exact shape, so that the temp files of a catalog called products.json.staging are not ours.
    return re.compile(rf"^{re.escape(temp_prefix(path))}[0-9a-f]{{{TEMP_TOKEN_LENGTH}}}{re.escape(TEMP_SUFFIX)}$")


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, exclusive temp file. Created with 0666 so the kernel applies the umask, as for any new file."""
    while True:
        temp = path.parent / f"{temp_prefix(path)}{secrets.token_hex(TEMP_TOKEN_LENGTH // 2)}{TEMP_SUFFIX}"
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp
        except FileExistsError:
            continue


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new directory entry durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete temp files left by writers that crashed. Call only while holding the write lock."""
    removed = []
    pattern = _temp_name_pattern(path)
    for candidate in path.parent.glob(f"{temp_prefix(path)}*{TEMP_SUFFIX}"):
        if not pattern.match(candidate.name):
            continue
        with suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def fsync_file(path: Path) -> None:
    """Make a file's data durable (for a temp file written with ``sync=False``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write ``parts`` one after the other: gathered writes (``writev``), no copy into one buffer."""
    views = [memoryview(part) for part in parts if len(part)]
    at = 0
    while at < len(views):
        written = os.writev(fd, views[at:at + IOV_MAX])
        while at < len(views) and written >= len(views[at]):  # skip what was written whole
            written -= len(views[at])
            at += 1
        if written:  # a short write: the rest of that part next
            views[at] = views[at][written:]


def write_temp(path: Path, data: bytes | Sequence[bytes | memoryview], sync: bool = True) -> Path:
    """Write ``data`` (bytes, or parts written one after the other) to a new temp sibling of
    ``path``, fsynced unless ``sync=False`` (then the caller calls ``fsync_file`` before relying
    on it), with ``path``'s mode if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb", buffering=0) as handle:
            write_all(handle.fileno(), [data] if isinstance(data, bytes) else data)
            if sync:
                os.fsync(handle.fileno())
        with suppress(FileNotFoundError):
            # Readers such as a website build rely on the catalog's mode staying what it was.
            os.chmod(temp, path.stat().st_mode & 0o7777)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise CommitError(f"{path}: could not write the new version ({exc}); the previous version is intact"
                              f"{FULL_DISK_HINT if exc.errno == errno.ENOSPC else ''}") from exc
        raise
    return temp


def discard(*temps: Path | None) -> None:
    for temp in temps:
        if temp is not None:
            with suppress(FileNotFoundError):
                temp.unlink()


def release_cached_pages(path: Path | None) -> None:
    """Let the kernel drop ``path``'s cached pages (clean once fsynced); never fails.

    Why: a backup is the catalog a commit replaced, a hard link to the very pages readers had.
    Kept cached, they make the next commit's write take new pages instead of reusing them: on
    this project's 2-core test VM, writing 13 MB into new pages took 29-31 ms against 2.5 ms
    into reused ones (a plain loop of link, write, fsync and rename, bench/README.md), and a
    100-record commit at 10,000 products went from 16 ms to 42 ms when commits came back to
    back. A backup is read rarely (restore, rotation), from the disk then; a reader still in
    the middle of the old version reads the rest from the disk.
    """
    if path is None or not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError as exc:
        log.debug("could not release the cached pages of %s: %s", path, exc)
    finally:
        os.close(fd)


def sync_folder_or_warn(folder: Path) -> None:
    try:
        fsync_dir(folder)
    except OSError as exc:
        # The rename is already visible; failing now would report a write that happened as one
        # that did not. Say loudly that durability is not guaranteed.
        log.warning("syncing %s failed (%s): a power loss may undo the last write", folder, exc)


def atomic_write(path: Path, data: bytes, before_replace: Callable[[], None] | None = None) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    Steps: temp file in the same folder, write, flush, fsync, ``before_replace`` (it may raise
    to abort), ``os.replace``, fsync of the folder. If any step up to the replace fails, the
    old file is intact and the temp file is removed.
    """
    temp = write_temp(path, data)
    try:
        if before_replace is not None:
            before_replace()
        os.replace(temp, path)
    except BaseException as exc:
        discard(temp)
        if isinstance(exc, OSError):
            raise CommitError(f"{path}: could not replace it ({exc}); the previous version is intact") from exc
        raise
    sync_folder_or_warn(path.parent)


def read_regular_file(path: Path, fail: Callable[[str], Exception], *, limit: int | None = None,
                      follow_links: bool = True) -> tuple[bytes, os.stat_result] | None:
    """The bytes of ``path`` and the ``fstat`` of the descriptor they came from; None if it does not exist.

    The one way the worker reads the files beside the catalog (catalog, state, id, backups):
    only a regular file is read (a FIFO is not waited on: opened non-blocking, checked with
    ``fstat``; a device is never read), at most ``limit`` bytes. ``fail(reason)`` builds the
    caller's error, so each file keeps its own message and exit code.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fail(f"cannot open it ({exc.strerror})") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise fail("not a regular file")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if limit is not None and total > limit:
                raise fail(f"over {limit:,} bytes")
            chunks.append(chunk)
    except OSError as exc:
        raise fail(f"cannot read it ({exc.strerror})") from None
    finally:
        os.close(fd)
    return b"".join(chunks), status
