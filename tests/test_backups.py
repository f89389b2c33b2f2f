"""worker.backups: unique names, rotation by the name's timestamp, restore by name only."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from catalog_core.errors import BackupNotFoundError
from worker.backups import backup_name, find_backup, list_backups, rotate_backups, take_backup

NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)


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
    removed = rotate_backups(catalog, backup_dir, retention_days=7, now=NOW)
    assert [b.path for b in removed] == [old]
    assert not old.exists() and recent.exists()


def test_rotation_always_keeps_the_newest_backup(catalog: Path, backup_dir: Path) -> None:
    ancient = [plant(backup_dir, catalog, dt.timedelta(days=d)) for d in (30, 20, 10)]
    rotate_backups(catalog, backup_dir, retention_days=7, now=NOW)
    assert [p.exists() for p in ancient] == [False, False, True]


def test_rotation_never_touches_files_that_are_not_backups(catalog: Path, backup_dir: Path) -> None:
    plant(backup_dir, catalog, dt.timedelta(days=40))
    plant(backup_dir, catalog, dt.timedelta(days=1))
    strangers = [backup_dir / name for name in ("notes.txt", "products_old.json", "other_20200101_000000_000000.json")]
    for path in strangers:
        path.write_text("keep me")
        os.utime(path, (0, 0))
    rotate_backups(catalog, backup_dir, retention_days=0, now=NOW)
    assert all(path.exists() for path in strangers)


def test_a_dry_run_deletes_nothing(catalog: Path, backup_dir: Path) -> None:
    old = plant(backup_dir, catalog, dt.timedelta(days=8))
    plant(backup_dir, catalog, dt.timedelta(days=1))
    assert [b.path for b in rotate_backups(catalog, backup_dir, 7, now=NOW, dry_run=True)] == [old]
    assert old.exists()


def test_two_rotations_at_once_do_no_harm(catalog: Path, backup_dir: Path) -> None:
    old = plant(backup_dir, catalog, dt.timedelta(days=8))
    plant(backup_dir, catalog, dt.timedelta(days=1))
    old.unlink()  # as if the other rotation got there first, after this one listed the folder
    rotate_backups(catalog, backup_dir, 7, now=NOW)


def test_a_missing_backup_folder_has_no_backups(catalog: Path, backup_dir: Path) -> None:
    assert list_backups(catalog, backup_dir) == []
    assert rotate_backups(catalog, backup_dir, 7) == []


@pytest.mark.parametrize("name", ["../products.json", "/etc/passwd", "backups/x.json", "..", "products.json"])
def test_find_backup_accepts_only_backup_names_in_the_folder(catalog: Path, backup_dir: Path, name: str) -> None:
    plant(backup_dir, catalog, dt.timedelta(days=1))
    with pytest.raises(BackupNotFoundError):
        find_backup(catalog, backup_dir, name)


def test_find_backup_finds_a_listed_backup(catalog: Path, backup_dir: Path) -> None:
    planted = plant(backup_dir, catalog, dt.timedelta(days=1))
    assert find_backup(catalog, backup_dir, planted.name).path == planted
