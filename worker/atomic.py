"""Atomic replacement of a file: readers see the old version or the new one, never a mix."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from catalog_core.errors import CommitError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """Temp files are hidden siblings, so they share the catalog's file system and rename atomically."""
    return f".{path.name}."


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
    for candidate in path.parent.glob(f"{temp_prefix(path)}*{TEMP_SUFFIX}"):
        with suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _target_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: Path, data: bytes, before_replace: Callable[[], None] | None = None) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    Steps: temp file in the same folder, write, flush, fsync, ``before_replace`` (backup and
    lock check; it may raise to abort), ``os.replace``, fsync of the folder. If any step up to
    the replace fails, the old file is intact and the temp file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=TEMP_SUFFIX)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes 0600; readers such as a website build need the catalog's usual mode.
        os.chmod(temp, _target_mode(path))
        if before_replace is not None:
            before_replace()
        os.replace(temp, path)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise CommitError(f"{path}: could not write the new catalog ({exc}); the previous one is intact") from exc
        raise
    try:
        fsync_dir(path.parent)
    except OSError as exc:
        # The new file is already in place and visible; failing now would report a write
        # that happened as one that did not. Say loudly that durability is not guaranteed.
        log.warning("%s replaced, but syncing its folder failed (%s): a power loss may undo it", path, exc)
