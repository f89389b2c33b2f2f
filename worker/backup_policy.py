"""Which backups to keep, compress or delete: pure functions of the backups, the time and the policy.

Grandfather-father-son, by a backup's age (``now`` minus the UTC time in its name):

- up to ``keep_all``: every backup is kept;
- up to ``hourly_until``: one per UTC hour, the newest of that hour;
- up to ``retention``: one per UTC day, the newest of that day;
- older: deleted.

The buckets are calendar hours and days, not windows counted back from ``now``: a backup kept
as its hour's representative stays that hour's representative at every later pass until it
moves on to the daily zone, so thinning only ever removes, and never removes the backup a
later pass would have wanted. The newest two backups are always kept, at any age and under
any cap: the newest holds the catalog from before the last commit, and the one before it the
version before that, so the last commit and the one before can be undone.

Kept backups older than ``compress_after`` are compressed. The byte cap is judged after
compression (``plan_cap``, on the sizes the folder then has): the oldest go first.

Nothing here reads the disk or the clock, so tests pass backups and a ``now`` of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from catalog_core.settings import Settings

PROTECTED_NEWEST = 2

REASON_RETENTION = "older than the retention"
REASON_HOURLY = "thinned: a newer backup of the same hour is kept"
REASON_DAILY = "thinned: a newer backup of the same day is kept"
REASON_CAP = "over the byte cap"


class BackupLike(Protocol):
    """What the policy needs to know of a backup."""

    @property
    def name(self) -> str: ...

    @property
    def taken_at(self) -> dt.datetime: ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def compressed(self) -> bool: ...


B = TypeVar("B", bound=BackupLike)


@dataclass(frozen=True)
class BackupPolicy:
    """The thinning steps, the compression age and the cap (0: no cap)."""

    keep_all: dt.timedelta = dt.timedelta(hours=1)
    hourly_until: dt.timedelta = dt.timedelta(days=1)
    retention: dt.timedelta = dt.timedelta(days=7)
    compress_after: dt.timedelta = dt.timedelta(hours=1)
    max_bytes: int = 0
    warn_ratio: float = 0.8

    @classmethod
    def from_settings(cls, settings: Settings, retention_days: float | None = None) -> BackupPolicy:
        """The policy the settings describe; ``retention_days`` overrides the retention (CLI --days)."""
        days = settings.backup_retention_days if retention_days is None else retention_days
        return cls(
            keep_all=dt.timedelta(hours=settings.backup_keep_all_hours),
            hourly_until=dt.timedelta(days=settings.backup_hourly_days),
            retention=dt.timedelta(days=days),
            compress_after=dt.timedelta(hours=settings.backup_compress_after_hours),
            max_bytes=settings.backup_max_bytes,
            warn_ratio=settings.backup_warn_ratio,
        )

    @property
    def warn_bytes(self) -> int:
        """The size at which health warns; 0 when there is no cap."""
        return int(self.max_bytes * self.warn_ratio)


@dataclass
class Plan(Generic[B]):
    """What a rotation does with each backup: every backup is in exactly one of the three lists."""

    keep: list[B] = field(default_factory=list)  # kept as they are
    compress: list[B] = field(default_factory=list)  # kept, compressed
    delete: list[tuple[B, str]] = field(default_factory=list)  # with the reason


def _bucket(backup: BackupLike, age: dt.timedelta, policy: BackupPolicy) -> tuple[str, dt.datetime] | None:
    """The calendar bucket a backup competes in; None when it is kept whatever the others are."""
    if age <= policy.keep_all:
        return None
    taken = backup.taken_at.astimezone(dt.UTC)
    if age <= policy.hourly_until:
        return "hour", taken.replace(minute=0, second=0, microsecond=0)
    return "day", taken.replace(hour=0, minute=0, second=0, microsecond=0)


def plan_thinning(backups: Sequence[B], now: dt.datetime, policy: BackupPolicy) -> Plan[B]:
    """Keep, compress or delete each of ``backups`` (any order) at ``now``."""
    ordered = sorted(backups, key=lambda backup: backup.taken_at)
    protected = {id(backup) for backup in ordered[-PROTECTED_NEWEST:]}
    plan: Plan[B] = Plan()
    newest_in_bucket: dict[tuple[str, dt.datetime], B] = {}
    survivors: list[B] = []
    for backup in reversed(ordered):  # newest first: the first seen in a bucket is its newest
        age = now - backup.taken_at
        bucket = None if age > policy.retention else _bucket(backup, age, policy)
        if id(backup) in protected:
            if bucket is not None:  # it stands for its hour or day: no other one of it is needed
                newest_in_bucket.setdefault(bucket, backup)
            survivors.append(backup)
        elif age > policy.retention:
            plan.delete.append((backup, REASON_RETENTION))
        elif bucket is None:
            survivors.append(backup)
        elif bucket in newest_in_bucket:
            plan.delete.append((backup, REASON_HOURLY if bucket[0] == "hour" else REASON_DAILY))
        else:
            newest_in_bucket[bucket] = backup
            survivors.append(backup)
    for backup in reversed(survivors):
        if not backup.compressed and now - backup.taken_at > policy.compress_after:
            plan.compress.append(backup)
        else:
            plan.keep.append(backup)
    plan.delete.reverse()
    return plan


def plan_cap(backups: Sequence[B], policy: BackupPolicy) -> list[B]:
    """The oldest backups to delete so that the rest fit in ``policy.max_bytes``; never the newest two.

    When even the newest two do not fit, everything else goes and they stay: a backup the last
    commit may need is worth more than the cap.
    """
    if policy.max_bytes <= 0:
        return []
    ordered = sorted(backups, key=lambda backup: backup.taken_at)
    total = sum(backup.size_bytes for backup in ordered)
    doomed = []
    for backup in ordered[:-PROTECTED_NEWEST]:
        if total <= policy.max_bytes:
            break
        doomed.append(backup)
        total -= backup.size_bytes
    return doomed


@dataclass(frozen=True)
class BackupUsage:
    """What the backups take, for ``catalog health`` and the metrics."""

    count: int
    compressed_count: int
    total_bytes: int
    cap_bytes: int  # 0: no cap
    warn_bytes: int  # health warns from this size on; 0: no cap
    oldest_age: dt.timedelta | None  # None: no backups
    newest_age: dt.timedelta | None
    near_cap: bool  # at or past the warning share of the cap: a burst may make the rotation delete history
    over_cap: bool  # past the cap: the next rotation deletes the oldest


def usage_of(backups: Sequence[BackupLike], now: dt.datetime, policy: BackupPolicy) -> BackupUsage:
    """Count, bytes and ages of ``backups`` against the policy's cap."""
    times = [backup.taken_at for backup in backups]
    total = sum(backup.size_bytes for backup in backups)
    capped = policy.max_bytes > 0
    return BackupUsage(
        count=len(backups),
        compressed_count=sum(1 for backup in backups if backup.compressed),
        total_bytes=total,
        cap_bytes=policy.max_bytes,
        warn_bytes=policy.warn_bytes,
        oldest_age=now - min(times) if times else None,
        newest_age=now - max(times) if times else None,
        near_cap=capped and total >= policy.warn_bytes,
        over_cap=capped and total > policy.max_bytes,
    )
