"""worker.atomic: a failure at any step leaves the old file intact and no temp file behind."""

from __future__ import annotations

import ctypes
import mmap
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



def resident_pages(path: Path) -> int:
    """Pages of ``path`` in the page cache now: mincore(2) over a read-only map of it (its address
    read from /proc/self/maps, as a read-only mmap object does not give it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    with path.open("rb") as file, mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ):
        start = next(int(line.split("-", 1)[0], 16) for line in Path("/proc/self/maps").read_text().splitlines()
                     if line.endswith(" " + str(path)))
        vector = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
        if libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(size), vector) != 0:
            pytest.skip(f"mincore(2) failed: {os.strerror(ctypes.get_errno())}")
    return sum(byte & 1 for byte in vector)


def cached_file(path: Path) -> Path:
    path.write_bytes(os.urandom(4 * 1024 * 1024))
    with path.open("rb+") as file:
        os.fsync(file.fileno())  # clean pages: the kernel may drop them
    return path


@pytest.mark.skipif(not hasattr(os, "posix_fadvise") or not Path("/proc/self/maps").exists(),
                    reason="needs posix_fadvise and /proc (Linux)")
def test_the_pages_of_a_replaced_version_are_left_to_the_kernel(tmp_path: Path) -> None:
    # A control file, released with the system call itself, tells whether this file system drops
    # clean pages at all (tmpfs keeps them): only then can the helper be judged.
    control = cached_file(tmp_path / "control.json")
    with control.open("rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if resident_pages(control) > 0:
        pytest.skip("this file system keeps a file's clean pages cached whatever it is told (tmpfs?)")
    backup = cached_file(tmp_path / "products_20261130_120000_000000.json")
    assert resident_pages(backup) > 0
    atomic.release_cached_pages(backup)
    assert resident_pages(backup) == 0
    assert backup.read_bytes()  # the file itself is untouched, read from the disk


def test_releasing_the_pages_of_a_file_that_is_gone_is_not_an_error(tmp_path: Path) -> None:
    atomic.release_cached_pages(tmp_path / "gone.json")
    atomic.release_cached_pages(None)
