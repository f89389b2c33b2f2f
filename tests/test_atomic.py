"""worker.atomic: a failure at any step leaves the old file intact and no temp file behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from catalog_core.errors import CommitError
from worker import atomic
from worker.atomic import atomic_write, remove_stale_temp_files


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "products.json"
    path.write_bytes(b"OLD")
    return path


def test_a_write_replaces_the_file_and_leaves_no_temp_file(target: Path) -> None:
    atomic_write(target, b"NEW")
    assert target.read_bytes() == b"NEW"
    assert leftovers(target.parent) == []


def test_the_first_write_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "products.json"
    atomic_write(path, b"[]")
    assert path.read_bytes() == b"[]"


def test_the_new_file_keeps_the_old_files_permissions(target: Path) -> None:
    os.chmod(target, 0o640)
    atomic_write(target, b"NEW")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_new_file_is_readable_by_other_programs(tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    atomic_write(path, b"[]")
    assert stat.S_IMODE(path.stat().st_mode) & 0o044


def _fail(*_args: object, **_kwargs: object) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("step", ["fsync", "replace", "chmod"])
def test_a_failing_commit_step_keeps_the_old_file_and_removes_the_temp(
    target: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    monkeypatch.setattr(atomic.os, step, _fail)
    with pytest.raises(CommitError, match="previous version is intact"):
        atomic_write(target, b"NEW")
    monkeypatch.undo()
    assert target.read_bytes() == b"OLD"
    assert leftovers(target.parent) == []


def test_a_failing_write_keeps_the_old_file_and_removes_the_temp(
    target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int, buffers: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "writev", full_disk)
    with pytest.raises(CommitError):
        atomic_write(target, b"NEW")
    monkeypatch.undo()
    assert target.read_bytes() == b"OLD"
    assert leftovers(target.parent) == []


def test_an_abort_before_replace_keeps_the_old_file_and_removes_the_temp(target: Path) -> None:
    class Abort(Exception):
        pass

    def refuse() -> None:
        raise Abort

    with pytest.raises(Abort):
        atomic_write(target, b"NEW", before_replace=refuse)
    assert target.read_bytes() == b"OLD"
    assert leftovers(target.parent) == []


def test_a_failing_folder_sync_after_the_replace_is_logged_not_raised(
    target: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(atomic, "fsync_dir", _fail)
    atomic_write(target, b"NEW")
    assert target.read_bytes() == b"NEW"
    assert "power loss" in caplog.text


def test_stale_temp_files_of_this_catalog_are_removed_and_others_kept(target: Path) -> None:
    stale = target.parent / ".products.json.0badc0de.tmp"
    stale.write_bytes(b"half a catalog")
    others = [target.parent / name for name in (".other.json.0badc0de.tmp", ".products.json.staging.0badc0de.tmp")]
    for other in others:
        other.write_bytes(b"not ours: another catalog, another lock")
    assert remove_stale_temp_files(target) == [stale]
    assert not stale.exists() and all(other.exists() for other in others)


def test_a_new_catalog_gets_the_usual_mode_for_new_files(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        atomic_write(tmp_path / "products.json", b"[]")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "products.json").stat().st_mode) == 0o640


def test_parts_are_written_whole_and_in_order_even_when_the_kernel_writes_them_in_pieces(
    target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev

    def short_writev(fd: int, buffers: list[memoryview]) -> int:  # at most 3 bytes a call, as a kernel may
        return real_writev(fd, [bytes(b"".join(bytes(b) for b in buffers)[:3])])

    parts = [b"[\n", memoryview(b"abcdefgh")[2:7], b"", b",\n", b"x" * 10, b"\n]\n"]
    monkeypatch.setattr(atomic.os, "writev", short_writev)
    atomic_write(target, b"".join(bytes(p) for p in parts))
    temp = atomic.write_temp(target, parts)
    monkeypatch.undo()
    assert temp.read_bytes() == target.read_bytes() == b"[\ncdefg,\nxxxxxxxxxx\n]\n"
    temp.unlink()
