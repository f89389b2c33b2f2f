"""worker.backup_policy: grandfather-father-son thinning, compression age and byte cap, with a clock passed in.

The reference (``expected_kept``) states the rule one backup at a time: a backup survives when
it is one of the newest two, or within the retention and either within the keep-all window
or with no newer backup in its calendar hour (hourly zone) or day (daily zone). The code
under test groups backups into buckets instead; the two must agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hypothesis import given, settings as hypothesis_settings, strategies as st

from worker.backup_policy import BackupPolicy, plan_cap, plan_thinning, usage_of

NOW = dt.datetime(2026, 11, 28, 12, 30, 0, tzinfo=dt.UTC)
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
POLICY = BackupPolicy(keep_all=HOUR, hourly_until=DAY, retention=7 * DAY, compress_after=HOUR)


@dataclass(frozen=True)
class Fake:
    name: str
    taken_at: dt.datetime
    size_bytes: int = 100
    compressed: bool = False


def ago(*steps: dt.timedelta, size: int = 100, compressed: bool = False) -> Fake:
    taken_at = NOW - sum(steps, dt.timedelta())
    return Fake(taken_at.strftime("b_%Y%m%d_%H%M%S_%f"), taken_at, size, compressed)


def names(backups: list[Fake]) -> set[str]:
    return {backup.name for backup in backups}


def kept_names(backups: list[Fake], now: dt.datetime, policy: BackupPolicy) -> set[str]:
    plan = plan_thinning(backups, now, policy)
    assert len(plan.keep) + len(plan.compress) + len(plan.delete) == len(backups)
    return names(plan.keep) | names(plan.compress)


# --- the reference: one backup at a time, no grouping ----------------------------------------

def _zone_and_slot(backup: Fake, now: dt.datetime, policy: BackupPolicy) -> tuple[str, object]:
    age = now - backup.taken_at
    if age <= policy.keep_all:
        return "all", backup.name
    if age <= policy.hourly_until:
        return "hour", (backup.taken_at.date(), backup.taken_at.hour)
    return "day", backup.taken_at.date()


def expected_kept(backups: list[Fake], now: dt.datetime, policy: BackupPolicy) -> set[str]:
    newest_two = set(sorted(backups, key=lambda b: b.taken_at)[-2:])
    in_retention = [b for b in backups if now - b.taken_at <= policy.retention]
    kept = set()
    for backup in backups:
        if backup in newest_two:
            kept.add(backup.name)
            continue
        if backup not in in_retention:
            continue
        zone, slot = _zone_and_slot(backup, now, policy)
        newer_in_same_slot = any(
            other.taken_at > backup.taken_at and _zone_and_slot(other, now, policy) == (zone, slot)
            for other in in_retention
        )
        if zone == "all" or not newer_in_same_slot:
            kept.add(backup.name)
    return kept


# --- examples a person can check by hand ------------------------------------------------------

def test_every_backup_of_the_first_hour_is_kept_and_none_is_compressed() -> None:
    backups = [ago(dt.timedelta(minutes=m)) for m in range(1, 60, 3)]
    plan = plan_thinning(backups, NOW, POLICY)
    assert names(plan.keep) == names(backups) and not plan.compress and not plan.delete


def test_past_the_first_hour_only_the_newest_of_each_utc_hour_is_kept_and_it_is_compressed() -> None:
    # NOW is 12:30: 10:05, 10:20 and 10:50 share the hour 10:00; 09:59 is alone in 09:00.
    at = [dt.timedelta(hours=2, minutes=25), dt.timedelta(hours=2, minutes=10), dt.timedelta(hours=1, minutes=40),
          dt.timedelta(hours=2, minutes=31)]
    b1005, b1020, b1050, b0959 = (ago(a) for a in at)
    newest = [ago(dt.timedelta(minutes=5)), ago(dt.timedelta(minutes=1))]
    plan = plan_thinning([b1005, b1020, b1050, b0959, *newest], NOW, POLICY)
    assert names(plan.compress) == names([b1050, b0959])
    assert names(plan.keep) == names(newest)
    assert names([backup for backup, _ in plan.delete]) == names([b1005, b1020])
    assert all("hour" in reason for _, reason in plan.delete)


def test_past_a_day_only_the_newest_of_each_utc_day_is_kept_until_the_retention() -> None:
    morning, evening = ago(3 * DAY, dt.timedelta(hours=6)), ago(3 * DAY, dt.timedelta(hours=-6))
    too_old = ago(8 * DAY)
    newest = [ago(dt.timedelta(minutes=2)), ago(dt.timedelta(minutes=1))]
    plan = plan_thinning([morning, evening, too_old, *newest], NOW, POLICY)
    assert kept_names([morning, evening, too_old, *newest], NOW, POLICY) == names([evening, *newest])
    assert dict((b.name, r) for b, r in plan.delete) == {morning.name: "thinned: a newer backup of the same day is kept",
                                                         too_old.name: "older than the retention"}


def test_the_newest_two_are_kept_at_any_age_even_past_the_retention() -> None:
    ancient = [ago(d * DAY) for d in (40, 30, 20, 10)]
    assert kept_names(ancient, NOW, POLICY) == names(ancient[-2:])
    assert kept_names(ancient, NOW, BackupPolicy(retention=dt.timedelta(0))) == names(ancient[-2:])


def test_the_newest_two_stand_for_their_hour_so_an_older_one_of_that_hour_goes() -> None:
    same_hour = [ago(HOUR, dt.timedelta(minutes=m)) for m in (25, 20, 15)]  # 11:05, 11:10, 11:15
    assert kept_names(same_hour, NOW, POLICY) == names(same_hour[1:])


def test_already_compressed_backups_are_not_compressed_again() -> None:
    old = ago(2 * DAY, compressed=True)
    plan = plan_thinning([old, ago(dt.timedelta(minutes=1))], NOW, POLICY)
    assert old in plan.keep and not plan.compress


def test_a_backup_from_the_future_clock_skew_is_kept_uncompressed() -> None:
    future = ago(-HOUR)
    plan = plan_thinning([ago(3 * DAY), ago(2 * DAY), future], NOW, POLICY)
    assert future in plan.keep


def test_thinning_a_burst_then_a_steady_rate_matches_the_reference_at_every_pass() -> None:
    start = NOW - 7 * DAY
    burst = [start + dt.timedelta(seconds=s) for s in range(0, 120, 2)]
    steady = [start + dt.timedelta(minutes=m) for m in range(3, 7 * 24 * 60, 17)]
    backups = [Fake(f"b{i}", t) for i, t in enumerate(burst + steady)]
    survivors = backups
    for hours in range(0, 7 * 24 + 48, 1):  # a rotation every hour, each on what the last one left
        now = start + dt.timedelta(hours=hours)
        present = [b for b in survivors if b.taken_at <= now]
        future = [b for b in survivors if b.taken_at > now]
        kept = kept_names(present, now, POLICY)
        assert kept == expected_kept(present, now, POLICY), now
        survivors = [b for b in present if b.name in kept] + future
    assert len(survivors) <= 2 + 24 + 7 + 60 // 17 + 2  # the last hour, 24 hours, 7 days


# --- the rule, on any folder ------------------------------------------------------------------

offsets = st.lists(st.integers(min_value=-3600, max_value=10 * 24 * 3600), min_size=0, max_size=60, unique=True)
policies = st.builds(
    BackupPolicy,
    keep_all=st.integers(0, 6).map(lambda h: dt.timedelta(hours=h)),
    hourly_until=st.integers(0, 3).map(lambda d: dt.timedelta(days=d)),
    retention=st.integers(0, 9).map(lambda d: dt.timedelta(days=d)),
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(offsets, policies)
def test_thinning_keeps_exactly_what_the_rule_says(seconds_ago: list[int], policy: BackupPolicy) -> None:
    backups = [ago(dt.timedelta(seconds=s)) for s in seconds_ago]
    assert kept_names(backups, NOW, policy) == expected_kept(backups, NOW, policy)


@hypothesis_settings(max_examples=200, deadline=None)
@given(offsets, st.integers(0, 48))
def test_compressed_are_exactly_the_kept_older_than_the_compression_age(seconds_ago: list[int], hours: int) -> None:
    policy = BackupPolicy(compress_after=dt.timedelta(hours=hours))
    backups = [ago(dt.timedelta(seconds=s)) for s in seconds_ago]
    plan = plan_thinning(backups, NOW, policy)
    kept = [b for b in backups if b.name in expected_kept(backups, NOW, policy)]
    assert names(plan.compress) == {b.name for b in kept if NOW - b.taken_at > policy.compress_after}


# --- the cap ----------------------------------------------------------------------------------

def test_the_cap_deletes_the_oldest_until_the_rest_fit() -> None:
    backups = [ago(d * DAY, size=100) for d in (6, 5, 4, 3, 2, 1)]
    doomed = plan_cap(backups, BackupPolicy(max_bytes=350))
    assert doomed == backups[:3]


def test_the_cap_never_deletes_the_newest_two_even_when_they_alone_are_over_it() -> None:
    backups = [ago(d * DAY, size=1000) for d in (3, 2, 1)]
    assert plan_cap(backups, BackupPolicy(max_bytes=10)) == backups[:1]


def test_no_cap_deletes_nothing() -> None:
    assert plan_cap([ago(d * DAY, size=10**12) for d in (3, 2, 1)], BackupPolicy(max_bytes=0)) == []


def test_usage_counts_bytes_ages_and_says_when_it_nears_the_cap() -> None:
    backups = [ago(2 * DAY, size=300, compressed=True), ago(HOUR, size=500)]
    usage = usage_of(backups, NOW, BackupPolicy(max_bytes=1000, warn_ratio=0.8))
    assert (usage.count, usage.compressed_count, usage.total_bytes) == (2, 1, 800)
    assert (usage.oldest_age, usage.newest_age) == (2 * DAY, HOUR)
    assert usage.near_cap and not usage.over_cap and usage.warn_bytes == 800
    assert not usage_of(backups, NOW, BackupPolicy(max_bytes=0)).near_cap
    empty = usage_of([], NOW, BackupPolicy(max_bytes=1000))
    assert (empty.count, empty.oldest_age, empty.near_cap) == (0, None, False)
