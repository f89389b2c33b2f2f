"""Backups on disk: compression that survives kill -9, restore of compressed backups through the real
store, gzip bombs, the byte cap, a full backup disk, and `catalog backups list`."""

from __future__ import annotations

import datetime as dt
import errno
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from catalog_core.errors import BackupFolderFullError, BackupNotFoundError, CommitError
from catalog_core.settings import Settings
from tests.conftest import CliRunner
from tests.helpers import product
from worker.backup_policy import BackupPolicy
from worker.backups import (CapWatch, backup_name, backup_usage, find_backup, hold_cap, list_backups, read_backup,
                            rotate_backups)
from worker.store import CatalogStore

NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)
KEEP_ALL_COMPRESS_ALL = BackupPolicy(keep_all=dt.timedelta(days=30), hourly_until=dt.timedelta(days=30),
                                     retention=dt.timedelta(days=30), compress_after=dt.timedelta(0))


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "products.json"
    path.write_text("[]")
    return path


@pytest.fixture
def backup_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "backups"
    folder.mkdir()
    return folder


def plant(backup_dir: Path, catalog: Path, age: dt.timedelta, content: bytes = b"[]", now: dt.datetime = NOW) -> Path:
    path = backup_dir / backup_name(catalog, now - age)
    path.write_bytes(content)
    return path


def one_old_and_two_recent(backup_dir: Path, catalog: Path) -> tuple[Path, bytes]:
    """A backup the default policy compresses (alone in its day) and the two newest, which stay plain."""
    content = json.dumps([product(f"P{i}") for i in range(50)]).encode()
    old = plant(backup_dir, catalog, dt.timedelta(days=2), content)
    for minutes in (2, 1):
        plant(backup_dir, catalog, dt.timedelta(minutes=minutes))
    return old, content


def hidden_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


# --- compression --------------------------------------------------------------------------------

def test_a_compressed_backup_replaces_the_plain_one_and_reads_back_the_same_bytes(catalog: Path, backup_dir: Path) -> None:
    old, content = one_old_and_two_recent(backup_dir, catalog)
    mode = 0o640
    old.chmod(mode)
    report = rotate_backups(catalog, backup_dir, BackupPolicy(), now=NOW)
    gz = old.with_name(old.name + ".gz")
    assert [backup.name for backup in report.compressed] == [gz.name]
    assert not old.exists() and gz.exists() and (gz.stat().st_mode & 0o777) == mode
    assert gzip.decompress(gz.read_bytes()) == content  # any gunzip can read it
    backup = find_backup(catalog, backup_dir, old.name)  # the name it had when it was taken still finds it
    assert backup.compressed and read_backup(backup) == content
    assert hidden_files(backup_dir) == []


def test_a_backup_compressed_between_its_listing_and_its_reading_is_still_read(catalog: Path, backup_dir: Path) -> None:
    old, content = one_old_and_two_recent(backup_dir, catalog)
    listed = find_backup(catalog, backup_dir, old.name)
    assert not listed.compressed
    rotate_backups(catalog, backup_dir, BackupPolicy(), now=NOW)
    assert not old.exists() and read_backup(listed) == content


KILL_DURING_COMPRESSION = """
import datetime as dt, gzip, os, pathlib, signal, sys
from pathlib import Path
from worker.backup_policy import BackupPolicy
from worker.backups import rotate_backups

catalog, folder, step, now = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], dt.datetime.fromisoformat(sys.argv[4])

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if step == "while-writing":
    gzip.GzipFile.write = die
elif step == "before-rename":
    os.replace = die
elif step == "before-removing-the-plain-one":
    pathlib.Path.unlink = die
rotate_backups(catalog, folder, BackupPolicy(), now=now)
sys.exit("not killed")
"""


@pytest.mark.parametrize("step", ["while-writing", "before-rename", "before-removing-the-plain-one"])
def test_a_compression_killed_at_any_step_loses_no_backup_and_the_next_rotation_finishes_it(
    catalog: Path, backup_dir: Path, step: str
) -> None:
    old, content = one_old_and_two_recent(backup_dir, catalog)
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_COMPRESSION, str(catalog), str(backup_dir), step,
                             NOW.isoformat()], capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Right after the crash: the backup is listed once, and reads back whole.
    listed = list_backups(catalog, backup_dir)
    assert len(listed) == 3 and listed[0].path == old
    assert read_backup(find_backup(catalog, backup_dir, old.name)) == content
    assert read_backup(find_backup(catalog, backup_dir, old.name + ".gz")) == content
    # A crash-left temp file is kept while it could still be a running pass's, removed once stale.
    temps = [backup_dir / name for name in hidden_files(backup_dir)]
    assert len(temps) == (0 if step == "before-removing-the-plain-one" else 1)
    rotate_backups(catalog, backup_dir, BackupPolicy(), now=NOW)
    assert all(temp.exists() for temp in temps)
    an_hour_and_more_ago = (NOW - dt.timedelta(hours=2)).timestamp()
    for temp in temps:
        os.utime(temp, (an_hour_and_more_ago, an_hour_and_more_ago))
    rotate_backups(catalog, backup_dir, BackupPolicy(), now=NOW)
    assert hidden_files(backup_dir) == []
    assert not old.exists() and gzip.decompress(old.with_name(old.name + ".gz").read_bytes()) == content


def test_a_compression_that_runs_out_of_space_keeps_the_plain_backup_and_says_so(
    catalog: Path, backup_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, content = one_old_and_two_recent(backup_dir, catalog)

    def disk_full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gzip.GzipFile, "write", disk_full)
    report = rotate_backups(catalog, backup_dir, BackupPolicy(), now=NOW)
    assert [(backup.name, why) for backup, why in report.failed] == [(old.name, "No space left on device")]
    assert old.read_bytes() == content and hidden_files(backup_dir) == []
    assert "could not compress 1" in report.summary()


# --- reading compressed backups -----------------------------------------------------------------

def test_restore_puts_back_a_compressed_backup_through_the_store(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    first_backup = store.apply([product("B")], "b2").backup
    store.apply([product("C")], "b3")
    assert first_backup is not None
    rotate_backups(settings.catalog_path, settings.backup_path, KEEP_ALL_COMPRESS_ALL)
    assert all(backup.compressed for backup in list_backups(settings.catalog_path, settings.backup_path))
    store.restore(Path(first_backup).name)  # the name the batch reported, before it was compressed
    assert [p["product_id"] for p in json.loads(settings.catalog_path.read_text())] == ["A"]
    store.restore(Path(first_backup).name + ".gz")  # and the name `backups list` shows now
    assert [p["product_id"] for p in json.loads(settings.catalog_path.read_text())] == ["A"]


def write_bomb(path: Path, unpacked_bytes: int) -> None:
    with gzip.open(path, "wb", compresslevel=9) as packed:
        zeros = bytes(1 << 20)
        for _ in range(unpacked_bytes >> 20):
            packed.write(zeros)


def test_a_gzip_bomb_is_refused_with_a_clear_error_in_bounded_memory(catalog: Path, backup_dir: Path) -> None:
    bomb = backup_dir / (backup_name(catalog, NOW) + ".gz")
    write_bomb(bomb, 256 << 20)
    assert bomb.stat().st_size < 1 << 20
    backup = find_backup(catalog, backup_dir, bomb.name)
    tracemalloc.start()
    try:
        with pytest.raises(BackupNotFoundError, match="unpacks to over 4,194,304 bytes.*gzip bomb"):
            read_backup(backup, max_bytes=4 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_restore_refuses_a_gzip_bomb_and_leaves_the_catalog_alone(
    settings: Settings,
) -> None:
    bounded = settings.model_copy(update={"max_file_bytes": 1 << 20})  # the bound restore uses
    store = CatalogStore(bounded)
    store.apply([product("A")], "b1")
    before = settings.catalog_path.read_bytes()
    settings.backup_path.mkdir(parents=True, exist_ok=True)
    bomb = settings.backup_path / (backup_name(settings.catalog_path, NOW) + ".gz")
    write_bomb(bomb, 8 << 20)
    with pytest.raises(BackupNotFoundError, match="gzip bomb"):
        store.restore(bomb.name)
    assert settings.catalog_path.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_a_damaged_compressed_backup_is_a_clear_error(catalog: Path, backup_dir: Path, damage: str) -> None:
    path = backup_dir / (backup_name(catalog, NOW) + ".gz")
    packed = gzip.compress(b'[{"product_id": "A"}]' * 1000)
    path.write_bytes(packed[: len(packed) // 2] if damage == "truncated" else b"[]")
    with pytest.raises(BackupNotFoundError, match="not a complete gzip file"):
        read_backup(find_backup(catalog, backup_dir, path.name))


def test_a_compressed_name_that_is_a_symlink_is_not_read(catalog: Path, backup_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.gz"
    secret.write_bytes(gzip.compress(b"[]"))
    (backup_dir / (backup_name(catalog, NOW) + ".gz")).symlink_to(secret)
    with pytest.raises(BackupNotFoundError, match="not a regular file"):
        find_backup(catalog, backup_dir, backup_name(catalog, NOW) + ".gz")


# --- the cap ------------------------------------------------------------------------------------

def test_the_cap_deletes_the_oldest_until_the_folder_fits_and_keeps_the_newest_two(
    catalog: Path, backup_dir: Path
) -> None:
    paths = [plant(backup_dir, catalog, dt.timedelta(days=days), b"x" * 1000) for days in (6, 5, 4, 3, 2, 1)]
    policy = BackupPolicy(retention=dt.timedelta(days=7), compress_after=dt.timedelta.max, max_bytes=3500)
    report = rotate_backups(catalog, backup_dir, policy, now=NOW)
    assert [p.exists() for p in paths] == [False, False, False, True, True, True]
    assert [reason for _, reason in report.deleted] == ["over the byte cap"] * 3
    assert sum(p.stat().st_size for p in backup_dir.iterdir()) <= 3500
    rotate_backups(catalog, backup_dir, BackupPolicy(max_bytes=10, compress_after=dt.timedelta.max), now=NOW)
    assert [p.exists() for p in paths] == [False] * 4 + [True, True]  # over the cap, but the newest two stay


def test_the_cap_is_judged_after_compression(catalog: Path, backup_dir: Path) -> None:
    paths = [plant(backup_dir, catalog, dt.timedelta(days=days), b"[]" + b" " * 10_000) for days in (3, 2, 1)]
    report = rotate_backups(catalog, backup_dir, BackupPolicy(max_bytes=5_000), now=NOW)
    assert report.deleted == [] and len(report.compressed) == 3 and report.total_bytes <= 5_000
    assert all(p.with_name(p.name + ".gz").exists() for p in paths)


def test_holding_the_cap_between_rotations_deletes_only_the_oldest_and_compresses_nothing(
    catalog: Path, backup_dir: Path
) -> None:
    paths = [plant(backup_dir, catalog, dt.timedelta(minutes=minutes), b"x" * 1000) for minutes in (50, 40, 30, 20, 10)]
    doomed = hold_cap(catalog, backup_dir, BackupPolicy(max_bytes=2500))
    assert [backup.path for backup in doomed] == paths[:3]
    assert [p.exists() for p in paths] == [False, False, False, True, True]
    assert hold_cap(catalog, backup_dir, BackupPolicy(max_bytes=0)) == []


def test_the_cap_held_after_each_commit_also_counts_backups_another_writer_added_since_its_last_look(
    catalog: Path, backup_dir: Path
) -> None:
    policy, watch = BackupPolicy(max_bytes=2500), CapWatch()
    backup_dir.mkdir(parents=True, exist_ok=True)
    first = plant(backup_dir, catalog, dt.timedelta(minutes=50), b"x" * 1000)
    assert watch.hold(catalog, backup_dir, policy, first) == []  # its first look: the whole folder
    ours = plant(backup_dir, catalog, dt.timedelta(minutes=40), b"x" * 1000)
    assert watch.hold(catalog, backup_dir, policy, ours) == []  # 2,000 bytes: under the cap
    plant(backup_dir, catalog, dt.timedelta(minutes=30), b"x" * 1000)  # another worker's commit
    newest = plant(backup_dir, catalog, dt.timedelta(minutes=20), b"x" * 10)
    assert [backup.path for backup in watch.hold(catalog, backup_dir, policy, newest)] == [first]
    assert not first.exists() and ours.exists()


def test_backup_usage_reports_count_bytes_ages_and_nearness_to_the_cap(settings: Settings) -> None:
    settings.backup_path.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC)
    plant(settings.backup_path, settings.catalog_path, dt.timedelta(days=2), b"x" * 900, now=now)
    plant(settings.backup_path, settings.catalog_path, dt.timedelta(hours=1), b"x" * 100, now=now)
    capped = settings.model_copy(update={"backup_max_bytes": 1200, "backup_warn_ratio": 0.8})
    usage = backup_usage(capped, now=now)
    assert (usage.count, usage.total_bytes, usage.cap_bytes, usage.near_cap, usage.over_cap) == (2, 1000, 1200, True,
                                                                                                 False)
    assert (usage.oldest_age, usage.newest_age) == (dt.timedelta(days=2), dt.timedelta(hours=1))


# --- a full backup disk -------------------------------------------------------------------------

def links_fail_in(folder: Path, error: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real_link = os.link

    def link(source: object, target: object, *args: object, **kwargs: object) -> None:
        if Path(str(target)).parent == folder:
            raise OSError(error, os.strerror(error))
        real_link(source, target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)


def assert_nothing_written(settings: Settings, before: bytes) -> None:
    assert settings.catalog_path.read_bytes() == before
    assert [p.name for p in settings.catalog_path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert list_backups(settings.catalog_path, settings.backup_path) == []


def test_a_full_backup_disk_fails_the_write_with_a_clear_commit_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    before = settings.catalog_path.read_bytes()
    links_fail_in(settings.backup_path, errno.ENOSPC, monkeypatch)
    with pytest.raises(BackupFolderFullError) as caught:
        store.apply([product("B")], "b2")
    assert isinstance(caught.value, CommitError)
    message = str(caught.value)
    assert f"the backup folder {settings.backup_path} is full" in message
    assert "catalog backups rotate" in message and "CATALOG_BACKUP_MAX_BYTES" in message
    assert_nothing_written(settings, before)


def test_a_copy_that_fills_the_backup_disk_leaves_no_partial_backup(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    before = settings.catalog_path.read_bytes()
    links_fail_in(settings.backup_path, errno.EXDEV, monkeypatch)  # another file system: copies

    def half_then_full(source: object, target: object, *args: object) -> None:
        target.write(b"[{")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", half_then_full)
    with pytest.raises(BackupFolderFullError, match="is full"):
        store.apply([product("B")], "b2")
    assert_nothing_written(settings, before)


def test_a_full_disk_shared_by_catalog_and_backups_says_where_the_space_may_have_gone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    before = settings.catalog_path.read_bytes()

    def disk_full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the new catalog's temp file cannot be made durable
    with pytest.raises(CommitError) as caught:
        store.apply([product("B")], "b2")
    assert "the previous version is intact" in str(caught.value)
    assert "catalog backups list" in str(caught.value) and "catalog backups rotate" in str(caught.value)
    monkeypatch.undo()
    assert_nothing_written(settings, before)


# --- catalog backups list -----------------------------------------------------------------------

def test_backups_list_shows_each_size_whether_compressed_and_the_total(run_cli: CliRunner, settings: Settings) -> None:
    settings.backup_path.mkdir(parents=True)
    plain = plant(settings.backup_path, settings.catalog_path, dt.timedelta(days=1), b"[]" + b" " * 1498)
    packed = settings.backup_path / (backup_name(settings.catalog_path, NOW - dt.timedelta(days=2)) + ".gz")
    packed.write_bytes(gzip.compress(b"[]"))
    size = packed.stat().st_size
    listed = run_cli("backups", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(packed.name) and lines[0].endswith(f"{size:,} bytes  gzip")
    assert lines[1].startswith(plain.name) and lines[1].endswith("1,500 bytes  plain")
    assert lines[2] == f"2 backup(s), 1 compressed: {1500 + size:,} bytes of the 2,147,483,648-byte cap (0%, " \
                       "CATALOG_BACKUP_MAX_BYTES)"
    as_json = [json.loads(line) for line in run_cli("backups", "list", "--json").stdout.splitlines()]
    assert [(e["name"], e["size_bytes"], e["compressed"]) for e in as_json] == [(packed.name, size, True),
                                                                                 (plain.name, 1500, False)]
