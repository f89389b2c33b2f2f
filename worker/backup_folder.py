"""The backup folder: which files are backups of a catalog, by name, kind and time. Reads only."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from catalog_core.errors import BackupError
from worker.backup_compression import COMPRESSED_SUFFIX

TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S_%f"


@dataclass(frozen=True)
class Backup:
    """One backup: its file, the instant its name records, its size and whether it is compressed.

    ``leftovers`` are other files of the same backup: a compressed copy whose plain original is
    still there (a compression stopped between its rename and its removal of the original).
    """

    path: Path
    taken_at: dt.datetime
    size_bytes: int = 0
    leftovers: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(COMPRESSED_SUFFIX)

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path, *self.leftovers)


def _instant(stamp: str) -> dt.datetime:
    """``YYYYmmdd_HHMMSS_ffffff`` (digits, as the pattern guarantees) as a UTC instant; ValueError if impossible.

    By hand rather than strptime, which is ten times slower: the folder is listed after every commit.
    """
    return dt.datetime(int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]), int(stamp[11:13]),
                       int(stamp[13:15]), int(stamp[16:22]), tzinfo=dt.UTC)


def _pattern(catalog: Path) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(catalog.stem)}_(\d{{8}}_\d{{6}}_\d{{6}})\.json({re.escape(COMPRESSED_SUFFIX)})?$")


def backup_name(catalog: Path, taken_at: dt.datetime) -> str:
    """``products_20251212_135521_004211.json`` for ``products.json`` at that UTC instant."""
    return f"{catalog.stem}_{taken_at.astimezone(dt.UTC).strftime(TIMESTAMP_FORMAT)}.json"


@dataclass(frozen=True)
class SkippedEntry:
    """A folder entry named like a backup that is not one, and why: it is reported, never deleted."""

    name: str
    reason: str


@dataclass(frozen=True)
class BackupScan:
    """What the backup folder holds: backups oldest first, and entries that only look like backups."""

    backups: list[Backup]
    skipped: list[SkippedEntry]


def _size(entry: os.DirEntry[str]) -> int | str:
    """The regular file's size; else why ``entry`` cannot be a backup. Never follows a symbolic link."""
    try:
        if entry.is_symlink():
            return "a symbolic link, not a regular file"
        if not entry.is_file(follow_symlinks=False):
            return "not a regular file"
        return entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return "removed while the folder was read"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"


def _one_backup(files: list[tuple[Path, int]], taken_at: dt.datetime) -> Backup:
    """The plain file leads when both exist: its compressed copy may be one a crash left unfinished."""
    files.sort(key=lambda found: found[0].name.endswith(COMPRESSED_SUFFIX))
    (path, size), rest = files[0], files[1:]
    return Backup(path, taken_at, size, tuple(other for other, _ in rest))


def scan_backups(catalog: Path, backup_dir: Path) -> BackupScan:
    """Backups of this catalog, oldest first. Files whose names do not match the pattern are ignored.

    Only regular files are backups: a symbolic link named like one (say, to /etc/shadow or to
    another catalog) is skipped, like a name whose timestamp is not a real instant.
    """
    pattern = _pattern(catalog)
    by_time: dict[dt.datetime, list[tuple[Path, int]]] = {}
    skipped = []
    try:
        with os.scandir(backup_dir) as entries:
            candidates = [(entry, match) for entry in entries if (match := pattern.match(entry.name))]
    except FileNotFoundError:
        return BackupScan([], [])
    except OSError as exc:
        raise BackupError(f"cannot list the backup folder {backup_dir}: {exc.strerror}") from None
    for entry, match in candidates:
        size = _size(entry)
        if isinstance(size, int):
            try:
                taken_at = _instant(match.group(1))
            except ValueError:
                size = "its name is not a real date and time"
            else:
                by_time.setdefault(taken_at, []).append((Path(entry.path), size))
                continue
        skipped.append(SkippedEntry(entry.name, size))
    backups = [_one_backup(files, taken_at) for taken_at, files in sorted(by_time.items())]
    return BackupScan(backups, sorted(skipped, key=lambda s: s.name))


def list_backups(catalog: Path, backup_dir: Path) -> list[Backup]:
    """Backups of this catalog, oldest first (see ``scan_backups`` for what is skipped)."""
    return scan_backups(catalog, backup_dir).backups
