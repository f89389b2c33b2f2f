"""Backups of the catalog: named by UTC timestamp, rotated by age, restorable by name."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from catalog_core.errors import BackupError, BackupNotFoundError
from worker.atomic import read_regular_file

log = logging.getLogger(__name__)

TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S_%f"


@dataclass(frozen=True)
class Backup:
    """One backup file and the instant its name records."""

    path: Path
    taken_at: dt.datetime

    @property
    def name(self) -> str:
        return self.path.name


def _pattern(catalog: Path) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(catalog.stem)}_(\d{{8}}_\d{{6}}_\d{{6}})\.json$")


def backup_name(catalog: Path, taken_at: dt.datetime) -> str:
    """``products_20251212_135521_004211.json`` for ``products.json`` at that UTC instant."""
    return f"{catalog.stem}_{taken_at.astimezone(dt.UTC).strftime(TIMESTAMP_FORMAT)}.json"


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard link (free: the catalog is about to be replaced, not modified), else an exclusive copy."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        with source.open("rb") as src, target.open("xb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())


def take_backup(catalog: Path, backup_dir: Path, now: dt.datetime | None = None) -> Path | None:
    """Keep the current catalog as a backup; None when there is no catalog yet.

    Names are unique across processes: when a name is taken, the next microsecond is tried.
    """
    if not catalog.exists():
        return None
    backup_dir.mkdir(parents=True, exist_ok=True)
    taken_at = now or dt.datetime.now(dt.UTC)
    for _ in range(10_000):
        target = backup_dir / backup_name(catalog, taken_at)
        try:
            _link_or_copy(catalog, target)
        except FileExistsError:
            taken_at += dt.timedelta(microseconds=1)
            continue
        except OSError as exc:
            raise BackupError(f"cannot back up {catalog} into {backup_dir}: {exc}") from exc
        return target
    raise BackupError(f"cannot find a free backup name in {backup_dir}")


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


def _kind(entry: os.DirEntry[str]) -> str | None:
    """Why ``entry`` cannot be a backup; None for a regular file. Never follows a symbolic link."""
    try:
        if entry.is_symlink():
            return "a symbolic link, not a regular file"
        if not entry.is_file(follow_symlinks=False):
            return "not a regular file"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    return None


def scan_backups(catalog: Path, backup_dir: Path) -> BackupScan:
    """Backups of this catalog, oldest first. Files whose names do not match the pattern are ignored.

    Only regular files are backups: a symbolic link named like one (say, to /etc/shadow or to
    another catalog) is skipped, like a name whose timestamp is not a real instant.
    """
    pattern = _pattern(catalog)
    found, skipped = [], []
    try:
        with os.scandir(backup_dir) as entries:
            candidates = [(entry, match) for entry in entries if (match := pattern.match(entry.name))]
    except FileNotFoundError:
        return BackupScan([], [])
    except OSError as exc:
        raise BackupError(f"cannot list the backup folder {backup_dir}: {exc.strerror}") from None
    for entry, match in candidates:
        problem = _kind(entry)
        if problem is None:
            try:
                taken_at = dt.datetime.strptime(match.group(1), TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)
            except ValueError:
                problem = "its name is not a real date and time"
            else:
                found.append(Backup(Path(entry.path), taken_at))
                continue
        skipped.append(SkippedEntry(entry.name, problem))
    return BackupScan(sorted(found, key=lambda backup: backup.taken_at), sorted(skipped, key=lambda s: s.name))


def list_backups(catalog: Path, backup_dir: Path) -> list[Backup]:
    """Backups of this catalog, oldest first (see ``scan_backups`` for what is skipped)."""
    return scan_backups(catalog, backup_dir).backups


def expired_backups(
    catalog: Path, backup_dir: Path, retention_days: float, now: dt.datetime | None = None
) -> list[Backup]:
    """Backups older than the retention, judged by the name's timestamp; never the newest one."""
    backups = list_backups(catalog, backup_dir)
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=retention_days)
    return [backup for backup in backups[:-1] if backup.taken_at < cutoff]


def rotate_backups(
    catalog: Path, backup_dir: Path, retention_days: float, now: dt.datetime | None = None, dry_run: bool = False
) -> list[Backup]:
    """Delete expired backups and return them. Safe to run twice at once: a file already gone is skipped.

    Entries that only look like backups are never deleted; they are logged, once per rotation.
    """
    expired = expired_backups(catalog, backup_dir, retention_days, now)
    if not dry_run:
        for backup in expired:
            backup.path.unlink(missing_ok=True)
    for entry in scan_backups(catalog, backup_dir).skipped:
        log.warning("%s in %s looks like a backup but is not one (%s); left alone", entry.name, backup_dir,
                    entry.reason)
    return expired


def read_backup(backup: Backup) -> bytes:
    """The backup's bytes, refusing a name that became a symbolic link or another kind of file since it was listed."""
    read = read_regular_file(backup.path, lambda reason: BackupNotFoundError(
        f"{backup.name} cannot be read as a backup: {reason}"), follow_links=False)
    if read is None:
        raise BackupNotFoundError(f"{backup.name}: no longer in {backup.path.parent}")
    return read[0]


def find_backup(catalog: Path, backup_dir: Path, name: str) -> Backup:
    """The backup called ``name``; only a plain backup file name in the folder is accepted."""
    if Path(name).name != name or name in {".", ".."}:
        raise BackupNotFoundError(f"{name!r}: give only the name of a file in {backup_dir}, not a path")
    scan = scan_backups(catalog, backup_dir)
    for backup in scan.backups:
        if backup.name == name:
            return backup
    for entry in scan.skipped:
        if entry.name == name:
            raise BackupNotFoundError(f"{name!r} in {backup_dir} is not a backup: {entry.reason}")
    raise BackupNotFoundError(f"no backup named {name!r} in {backup_dir} (see `catalog backups list`)")
