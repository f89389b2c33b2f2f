"""worker.backups: unique names, rotation by the name's timestamp, restore by name only."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalog_core.errors import BackupNotFoundError, CommitError
from worker.backup_policy import BackupPolicy
from worker.backups import (backup_name, backup_target, find_backup, link_backup, list_backups, read_backup,
                            rotate_backups, scan_backups, take_backup)

NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)


def keep_all_for(days: float) -> BackupPolicy:
    """The policy before thinning: every backup kept, uncompressed, for ``days``."""
    window = dt.timedelta(days=days)
    return BackupPolicy(keep_all=window, hourly_until=window, retention=window, compress_after=dt.timedelta.max)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "products.json"
    path.write_text("[]")
    return path


@pytest.fixture
def backup_dir(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def plant(backup_dir: Path, catalog: Path, age: dt.timedelta) -> Path:
    backup_dir.mkdir(exist_ok=True)
    path = backup_dir / backup_name(catalog, NOW - age)
    path.write_text("[]")
    return path


def test_backup_names_carry_the_catalog_stem_and_utc_time(catalog: Path) -> None:
    instant = dt.datetime(2025, 12, 12, 13, 55, 21, 4211, tzinfo=dt.UTC)
    assert backup_name(catalog, instant) == "products_20251212_135521_004211.json"


def test_no_catalog_means_no_backup(tmp_path: Path, backup_dir: Path) -> None:
    assert take_backup(tmp_path / "absent.json", backup_dir) is None


def test_a_backup_keeps_the_previous_content_after_the_catalog_is_replaced(catalog: Path, backup_dir: Path) -> None:
    backup = take_backup(catalog, backup_dir)
    assert backup is not None
    replacement = catalog.with_suffix(".new")
    replacement.write_text('[{"product_id": "A"}]')
    os.replace(replacement, catalog)
    assert backup.read_text() == "[]"


def test_many_backups_in_the_same_instant_get_unique_names(catalog: Path, backup_dir: Path) -> None:
    names = {take_backup(catalog, backup_dir, now=NOW) for _ in range(200)}
    assert len(names) == 200
    assert len(list_backups(catalog, backup_dir)) == 200


def test_a_backup_name_taken_after_it_was_chosen_commits_nothing_and_asks_for_a_retry(
    catalog: Path, backup_dir: Path
) -> None:
    target = backup_target(catalog, backup_dir, now=NOW)
    assert target is not None and not target.exists()
    target.write_text("put there by hand")
    with pytest.raises(CommitError, match="was taken while this write ran") as raised:
        link_backup(catalog, target)
    assert raised.value.retryable
    assert target.read_text() == "put there by hand"
    assert backup_target(catalog, backup_dir, now=NOW) != target  # the retry names another


def test_a_backup_falls_back_to_a_copy_when_hard_links_fail(
    catalog: Path, backup_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_args: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    backup = take_backup(catalog, backup_dir)
    assert backup is not None and backup.read_text() == "[]"
    assert backup.stat().st_ino != catalog.stat().st_ino


def test_rotation_deletes_backups_older_than_the_retention(catalog: Path, backup_dir: Path) -> None:
    old = plant(backup_dir, catalog, dt.timedelta(days=8))
    recent = plant(backup_dir, catalog, dt.timedelta(days=6))
    plant(backup_dir, catalog, dt.timedelta(days=1))  # the newest two are kept at any age
    removed = rotate_backups(catalog, backup_dir, keep_all_for(7), now=NOW).deleted
    assert [b.path for b, _ in removed] == [old]
    assert not old.exists() and recent.exists()


def test_rotation_always_keeps_the_newest_two_backups(catalog: Path, backup_dir: Path) -> None:
    ancient = [plant(backup_dir, catalog, dt.timedelta(days=d)) for d in (30, 20, 10)]
    rotate_backups(catalog, backup_dir, keep_all_for(7), now=NOW)
    assert [p.exists() for p in ancient] == [False, True, True]


def test_rotation_never_touches_files_that_are_not_backups(catalog: Path, backup_dir: Path) -> None:
    plant(backup_dir, catalog, dt.timedelta(days=40))
    plant(backup_dir, catalog, dt.timedelta(days=1))
    strangers = [backup_dir / name for name in ("notes.txt", "products_old.json", "other_20200101_000000_000000.json")]
    for path in strangers:
        path.write_text("keep me")
        os.utime(path, (0, 0))
    rotate_backups(catalog, backup_dir, keep_all_for(0), now=NOW)
    assert all(path.exists() for path in strangers)


def test_a_dry_run_deletes_nothing(catalog: Path, backup_dir: Path) -> None:
    old = plant(backup_dir, catalog, dt.timedelta(days=8))
    plant(backup_dir, catalog, dt.timedelta(days=1))
    plant(backup_dir, catalog, dt.timedelta(hours=1))
    assert [b.path for b, _ in rotate_backups(catalog, backup_dir, keep_all_for(7), now=NOW, dry_run=True).deleted] == [old]
    assert old.exists()


ROTATE_IN_A_RACE = """
import json, sys, time, datetime as dt
from pathlib import Path
import worker.backups as backups

catalog, folder, mine, theirs = map(Path, sys.argv[1:5])
now = dt.datetime.fromisoformat(sys.argv[5])
from worker.backup_policy import BackupPolicy
planned = backups.plan_thinning

def listed_then_wait_for_the_other(*args, **kwargs):
    plan = planned(*args, **kwargs)
    mine.touch()  # this process has listed the folder; now wait until the other one has too
    deadline = time.monotonic() + 60
    while not theirs.exists():
        if time.monotonic() > deadline:
            sys.exit("the other rotation never listed the folder")
        time.sleep(0.01)
    return plan

backups.plan_thinning = listed_then_wait_for_the_other
report = backups.rotate_backups(catalog, folder, BackupPolicy(), now=now)
print(json.dumps({'deleted': [b.name for b, _ in report.deleted], 'compressed': [b.name for b in report.compressed]}))
"""


def test_two_rotations_at_once_do_no_harm(catalog: Path, backup_dir: Path, tmp_path: Path) -> None:
    expired = {plant(backup_dir, catalog, dt.timedelta(days=8, seconds=n)).name for n in range(300)}
    same_day = [plant(backup_dir, catalog, dt.timedelta(days=3, seconds=n)).name for n in range(1, 21)]
    recent = {plant(backup_dir, catalog, dt.timedelta(minutes=n)).name for n in range(1, 6)}
    strangers = {"notes.txt", "products_20261399_000000_000000.json"}
    for name in strangers:
        (backup_dir / name).write_text("keep me")
    flags = [tmp_path / "listed-a", tmp_path / "listed-b"]
    # Both processes list the folder before either deletes or compresses anything, so every
    # file is deleted or compressed under the feet of the other: the race the name promises.
    rotations = [
        subprocess.Popen([sys.executable, "-c", ROTATE_IN_A_RACE, str(catalog), str(backup_dir), str(mine),
                          str(theirs), NOW.isoformat()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for mine, theirs in (flags, flags[::-1])
    ]
    outcomes = [rotation.communicate(timeout=120) for rotation in rotations]
    for rotation, (stdout, stderr) in zip(rotations, outcomes, strict=True):
        assert rotation.returncode == 0 and "Traceback" not in stderr, stderr
        done = json.loads(stdout)
        assert set(done["deleted"]) == expired | set(same_day[1:])  # each saw the same plan and finished it
        assert done["compressed"] in ([], [same_day[0] + ".gz"])
    assert {path.name for path in backup_dir.iterdir()} == recent | {same_day[0] + ".gz"} | strangers
    assert read_backup(find_backup(catalog, backup_dir, same_day[0])) == b"[]"


def test_a_missing_backup_folder_has_no_backups(catalog: Path, backup_dir: Path) -> None:
    assert list_backups(catalog, backup_dir) == []
    assert rotate_backups(catalog, backup_dir, keep_all_for(7)).deleted == []


@pytest.mark.parametrize("name", ["../products.json", "/etc/passwd", "backups/x.json", "..", "products.json"])
def test_find_backup_accepts_only_backup_names_in_the_folder(catalog: Path, backup_dir: Path, name: str) -> None:
    plant(backup_dir, catalog, dt.timedelta(days=1))
    with pytest.raises(BackupNotFoundError):
        find_backup(catalog, backup_dir, name)


def test_find_backup_finds_a_listed_backup(catalog: Path, backup_dir: Path) -> None:
    planted = plant(backup_dir, catalog, dt.timedelta(days=1))
    assert find_backup(catalog, backup_dir, planted.name).path == planted


IMPOSSIBLE = "products_20261399_000000_000000.json"


def test_a_backup_name_with_an_impossible_date_is_skipped_and_reported_never_deleted(
    catalog: Path, backup_dir: Path
) -> None:
    old = plant(backup_dir, catalog, dt.timedelta(days=30))
    newest = plant(backup_dir, catalog, dt.timedelta(days=1))
    (backup_dir / IMPOSSIBLE).write_text("[]")
    scan = scan_backups(catalog, backup_dir)
    assert [b.path for b in scan.backups] == [old, newest]
    assert [(s.name, "date") for s in scan.skipped if "date" in s.reason] == [(IMPOSSIBLE, "date")]
    middle = plant(backup_dir, catalog, dt.timedelta(days=2))
    assert [b.path for b, _ in rotate_backups(catalog, backup_dir, keep_all_for(0), now=NOW).deleted] == [old]
    assert middle.exists()
    assert (backup_dir / IMPOSSIBLE).exists()
    with pytest.raises(BackupNotFoundError):
        find_backup(catalog, backup_dir, IMPOSSIBLE)


def test_a_symlink_named_like_a_backup_is_not_a_backup(catalog: Path, backup_dir: Path, tmp_path: Path) -> None:
    real = plant(backup_dir, catalog, dt.timedelta(days=2))
    secret = tmp_path / "secret.json"
    secret.write_text('[{"product_id": "SECRET"}]')
    link = backup_dir / backup_name(catalog, NOW - dt.timedelta(days=1))
    link.symlink_to(secret)
    scan = scan_backups(catalog, backup_dir)
    assert [b.path for b in scan.backups] == [real]
    assert [s.name for s in scan.skipped] == [link.name] and "symbolic link" in scan.skipped[0].reason
    with pytest.raises(BackupNotFoundError, match="not a regular file"):
        find_backup(catalog, backup_dir, link.name)
    rotate_backups(catalog, backup_dir, keep_all_for(0), now=NOW)
    assert link.is_symlink() and secret.exists()


def test_a_folder_named_like_a_backup_is_skipped_and_reported(catalog: Path, backup_dir: Path) -> None:
    plant(backup_dir, catalog, dt.timedelta(days=2))
    (backup_dir / backup_name(catalog, NOW)).mkdir()
    scan = scan_backups(catalog, backup_dir)
    assert len(scan.backups) == 1 and [s.name for s in scan.skipped] == [backup_name(catalog, NOW)]


def test_a_backup_swapped_for_a_symlink_after_listing_is_not_read(catalog: Path, backup_dir: Path, tmp_path: Path) -> None:
    planted = plant(backup_dir, catalog, dt.timedelta(days=1))
    backup = find_backup(catalog, backup_dir, planted.name)
    assert read_backup(backup) == b"[]"
    secret = tmp_path / "secret.json"
    secret.write_text("[]")
    planted.unlink()
    planted.symlink_to(secret)
    with pytest.raises(BackupNotFoundError):
        read_backup(backup)
