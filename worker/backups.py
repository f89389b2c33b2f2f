"""Backups of the catalog: named by UTC timestamp, thinned and compressed as they age, restorable by name.

What a rotation keeps is decided by worker/backup_policy.py (pure); this module does the file work.
A backup is ``products_<YYYYmmdd_HHMMSS_ffffff>.json``, or ``....json.gz`` once compressed.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from catalog_core.errors import BackupError, BackupFolderFullError, BackupNotFoundError, CommitError
from catalog_core.settings import Settings
from worker.backup_compression import (COMPRESSED_SUFFIX, DEFAULT_MAX_BACKUP_BYTES, compress_file, decompress_bounded,
                                       remove_stale_compression_temps)
from worker.backup_folder import (Backup, BackupScan, SkippedEntry, backup_name, list_backups,  # noqa: F401
                                  scan_backups)  # re-exported: callers import them from here
from worker.backup_policy import REASON_CAP, BackupPolicy, BackupUsage, plan_cap, plan_thinning, usage_of
from worker.atomic import read_regular_file

log = logging.getLogger(__name__)

# A full disk or quota: a copy cannot succeed until someone frees space, so it gets its own message.
FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def _folder_full(backup_dir: Path, exc: OSError) -> BackupFolderFullError:
    return BackupFolderFullError(
        f"the backup folder {backup_dir} is full ({exc.strerror}): nothing was written, the catalog is unchanged. "
        "Free space there: run `catalog backups rotate` (it thins and compresses old backups), lower "
        "CATALOG_BACKUP_MAX_BYTES or CATALOG_BACKUP_RETENTION_DAYS, or point CATALOG_BACKUP_DIR at a larger disk")


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard link (free: the catalog is about to be replaced, not modified), else an exclusive copy.

    A copy that fails part way is removed: a truncated file named like a backup would be restorable.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno in FULL_DISK_ERRNOS:
            raise  # no room for a directory entry: a copy needs even more
        try:
            with source.open("rb") as src, target.open("xb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
        except FileExistsError:
            raise
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def take_backup(catalog: Path, backup_dir: Path, now: dt.datetime | None = None) -> Path | None:
    """Keep the current catalog as a backup; None when there is no catalog yet.

    Names are unique across processes: when a name is taken (plain or compressed), the next
    microsecond is tried. A full disk or quota is a ``BackupFolderFullError`` (a ``CommitError``):
    the commit it is part of stops, with what to do.
    """
    for _ in range(100):
        target = backup_target(catalog, backup_dir, now)
        if target is None:
            return None
        try:
            _link(catalog, target)
        except FileExistsError:
            continue  # taken in between: the next call finds it taken and names the next one
        return target
    raise BackupError(f"cannot find a free backup name in {backup_dir}")


def backup_target(catalog: Path, backup_dir: Path, now: dt.datetime | None = None) -> Path | None:
    """A free name for the backup of the current catalog, its folder made; None when there is no catalog yet.

    A write names its backup before it merges (its ledger entries carry the name) and links it
    (``link_backup``) only once it knows that the catalog changes: a write that changes nothing
    never touches the catalog file, whose change time then tells a writer whether anyone edited
    it in place (worker/recovery.py).
    """
    if not catalog.exists():
        return None
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in FULL_DISK_ERRNOS:
            raise _folder_full(backup_dir, exc) from exc
        raise BackupError(f"cannot create the backup folder {backup_dir}: {exc.strerror}") from exc
    taken_at = now or dt.datetime.now(dt.UTC)
    for _ in range(10_000):
        target = backup_dir / backup_name(catalog, taken_at)
        if not os.path.lexists(target) and not os.path.lexists(target.with_name(target.name + COMPRESSED_SUFFIX)):
            return target
        taken_at += dt.timedelta(microseconds=1)
    raise BackupError(f"cannot find a free backup name in {backup_dir}")


def link_backup(catalog: Path, target: Path) -> None:
    """Make ``target`` (``backup_target``'s, named earlier) the backup of the current catalog.

    Under the lock nobody else names backups; a name taken since anyway (by hand) is a
    ``CommitError``: nothing is committed, and the batches are retried (under a new name)."""
    try:
        _link(catalog, target)
    except FileExistsError:
        raise CommitError(f"the backup name {target.name} was taken while this write ran; nothing was "
                          "committed") from None


def _link(catalog: Path, target: Path) -> None:
    try:
        _link_or_copy(catalog, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno in FULL_DISK_ERRNOS:
            raise _folder_full(target.parent, exc) from exc
        raise BackupError(f"cannot back up {catalog} into {target.parent}: {exc}") from exc


def _remove(backup: Backup) -> None:
    for path in backup.files:
        path.unlink(missing_ok=True)  # another rotation may have been first


@dataclass
class RotationReport:
    """What one rotation pass did (or, in a dry run, would do)."""

    kept: list[Backup] = field(default_factory=list)
    compressed: list[Backup] = field(default_factory=list)  # as they are now, compressed
    deleted: list[tuple[Backup, str]] = field(default_factory=list)  # with the reason
    failed: list[tuple[Backup, str]] = field(default_factory=list)  # compressions that failed; kept plain
    skipped: list[SkippedEntry] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(backup.size_bytes for backup in self.kept)

    def summary(self) -> str:
        """One line for the log: counts and names of what was kept, compressed and deleted."""
        def part(verb: str, names: list[str]) -> str:
            return f"{verb} {len(names)}" + (f" ({', '.join(names)})" if names else "")
        parts = [part("kept", [b.name for b in self.kept]), part("compressed", [b.name for b in self.compressed]),
                 part("deleted", [b.name for b, _ in self.deleted])]
        if self.failed:
            parts.append(part("could not compress", [f"{b.name}: {why}" for b, why in self.failed]))
        return f"backup rotation: {'; '.join(parts)}; {self.total_bytes:,} bytes kept"

    def as_dict(self) -> dict[str, list[str]]:
        return {"kept": [b.name for b in self.kept], "compressed": [b.name for b in self.compressed],
                "removed": [b.name for b, _ in self.deleted], "failed": [b.name for b, _ in self.failed]}


def rotate_backups(catalog: Path, backup_dir: Path, policy: BackupPolicy, now: dt.datetime | None = None,
                   dry_run: bool = False) -> RotationReport:
    """Thin, compress, then hold the byte cap. Safe to run twice at once: a file already gone is skipped.

    Deletions come first, so a full disk gets room for the compressions. The cap is judged on
    the sizes after compression (in a dry run, on today's sizes: it may name more than a real
    run deletes). Entries that only look like backups are never deleted; they are logged.
    """
    now = now or dt.datetime.now(dt.UTC)
    scan = scan_backups(catalog, backup_dir)
    report = RotationReport(skipped=scan.skipped)
    for entry in scan.skipped:
        log.warning("%s in %s looks like a backup but is not one (%s); left alone", entry.name, backup_dir,
                    entry.reason)
    if not dry_run:
        for temp in remove_stale_compression_temps(backup_dir):
            log.warning("removed %s, left by a backup compression that crashed", temp.name)
    plan = plan_thinning(scan.backups, now, policy)
    report.deleted.extend(plan.delete)
    survivors = list(plan.keep)
    for backup, _ in plan.delete:
        if not dry_run:
            _remove(backup)
    for backup in plan.compress:
        if dry_run:
            report.compressed.append(backup)
            survivors.append(backup)
            continue
        try:
            path = compress_file(backup.path, backup.taken_at)
        except OSError as exc:  # a full disk, say: the plain backup stays, the next pass tries again
            report.failed.append((backup, exc.strerror or str(exc)))
            survivors.append(backup)
            continue
        if path is not None:
            done = Backup(path, backup.taken_at, path.stat().st_size)
            report.compressed.append(done)
            survivors.append(done)
    survivors.sort(key=lambda backup: backup.taken_at)
    doomed = plan_cap(survivors, policy)
    for backup in doomed:
        report.deleted.append((backup, REASON_CAP))
        if not dry_run:
            _remove(backup)
    report.kept = [backup for backup in survivors if backup not in doomed]
    report.compressed = [backup for backup in report.compressed if backup not in doomed]
    return report


def hold_cap(catalog: Path, backup_dir: Path, policy: BackupPolicy) -> list[Backup]:
    """Delete the oldest backups past the byte cap, as the rotation would, without thinning or compressing.

    Cheap (one listing of the folder): meant to run right after a commit, past its commit point
    and best effort, so that a burst of commits cannot fill the disk between two rotations.
    """
    return CapWatch().hold(catalog, backup_dir, policy, None)


class CapWatch:
    """``hold_cap`` for a writer that calls it after each backup it adds: the folder is examined
    only when it changed otherwise since the last pass.

    Why: a full pass stats and parses every backup's name, a few milliseconds for the hundred
    or more backups a cap of gigabytes holds, after every commit. The names alone (one
    ``listdir``) tell whether anyone else added, removed or compressed a backup since the last
    pass; if not, the total is the last one plus the backup just added.
    """

    def __init__(self) -> None:
        self._names: frozenset[str] | None = None
        self._total = 0

    def hold(self, catalog: Path, backup_dir: Path, policy: BackupPolicy, added: Path | None) -> list[Backup]:
        if policy.max_bytes <= 0:
            return []
        if added is not None and self._names is not None:
            try:
                names, size = frozenset(os.listdir(backup_dir)), os.stat(added).st_size
            except OSError:
                names, size = frozenset(), 0
            if names == self._names | {added.name} and self._total + size <= policy.max_bytes:
                self._names, self._total = names, self._total + size
                return []
        backups = list_backups(catalog, backup_dir)
        doomed = plan_cap(backups, policy)
        for backup in doomed:
            _remove(backup)
        if doomed:
            log.info("backups over the %s-byte cap: deleted %d (%s)", f"{policy.max_bytes:,}", len(doomed),
                     ", ".join(backup.name for backup in doomed))
        try:
            self._names = frozenset(os.listdir(backup_dir))
        except OSError:
            self._names = None
        self._total = sum(backup.size_bytes for backup in backups if backup not in doomed)
        return doomed


def read_backup(backup: Backup, max_bytes: int | None = None) -> bytes:
    """The backup's catalog bytes, decompressed if it is compressed, at most ``max_bytes`` of them
    (default: CATALOG_MAX_FILE_BYTES's default; pass ``settings.max_file_bytes``).

    Refuses a name that became a symbolic link or another kind of file since it was listed, and
    a compressed file that is damaged or would unpack to more than ``max_bytes`` (a gzip bomb).
    """
    max_bytes = DEFAULT_MAX_BACKUP_BYTES if max_bytes is None else max_bytes

    def unreadable(reason: str) -> BackupNotFoundError:
        return BackupNotFoundError(f"{backup.name} cannot be read as a backup: {reason}")

    read = read_regular_file(backup.path, unreadable, limit=max_bytes, follow_links=False)
    if read is None and not backup.compressed:  # compressed by a rotation since it was listed
        return read_backup(Backup(backup.path.with_name(backup.name + COMPRESSED_SUFFIX), backup.taken_at), max_bytes)
    if read is None:
        raise BackupNotFoundError(f"{backup.name}: no longer in {backup.path.parent}")
    if not backup.compressed:
        return read[0]
    return decompress_bounded(read[0], max_bytes, unreadable)


def find_backup(catalog: Path, backup_dir: Path, name: str) -> Backup:
    """The backup called ``name``; only a plain backup file name in the folder is accepted.

    A backup compressed since its name was noted is found under either name (with or without .gz).
    """
    if Path(name).name != name or name in {".", ".."}:
        raise BackupNotFoundError(f"{name!r}: give only the name of a file in {backup_dir}, not a path")
    scan = scan_backups(catalog, backup_dir)
    wanted = {name, name.removesuffix(COMPRESSED_SUFFIX), name.removesuffix(COMPRESSED_SUFFIX) + COMPRESSED_SUFFIX}
    for backup in scan.backups:
        if wanted & {path.name for path in backup.files}:
            return backup
    for entry in scan.skipped:
        if entry.name == name:
            raise BackupNotFoundError(f"{name!r} in {backup_dir} is not a backup: {entry.reason}")
    raise BackupNotFoundError(f"no backup named {name!r} in {backup_dir} (see `catalog backups list`)")


def backup_usage(settings: Settings, now: dt.datetime | None = None) -> BackupUsage:
    """How many backups there are, their bytes and ages, against CATALOG_BACKUP_MAX_BYTES (for health, metrics)."""
    backups = list_backups(settings.catalog_path, settings.backup_path)
    return usage_of(backups, now or dt.datetime.now(dt.UTC), BackupPolicy.from_settings(settings))
