"""worker.catalog_id: the catalog's lock is named by an id stored beside it, not by the path to it."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from catalog_core.errors import CatalogCorruptError
from worker import catalog_id as catalog_id_module
from worker.catalog_id import catalog_id_path, ensure_catalog_id, read_catalog_id
from worker.lock import lock_name, path_lock_name

RACERS = 8


def test_moving_the_folder_keeps_the_lock_name(tmp_path: Path) -> None:
    first = tmp_path / "mounted-here" / "products.json"
    name = lock_name(first)
    (tmp_path / "mounted-here").rename(tmp_path / "mounted-there")
    assert lock_name(tmp_path / "mounted-there" / "products.json") == name


def test_two_catalogs_have_two_lock_names(tmp_path: Path) -> None:
    assert lock_name(tmp_path / "a" / "products.json") != lock_name(tmp_path / "b" / "products.json")


def test_the_id_is_a_uuid_in_a_file_beside_the_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "products.json"
    created = ensure_catalog_id(catalog)
    assert catalog_id_path(catalog) == tmp_path / "products.json.id"
    assert created is not None and str(uuid.UUID(created)) == created
    assert read_catalog_id(catalog) == created == ensure_catalog_id(catalog)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["products.json.id"], "a temp file was left behind"


def _race(catalog: str, start: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    start.wait(90)  # generous: a loaded machine forks slowly; the race is at the release, not the wait
    results.put(ensure_catalog_id(Path(catalog)))


def test_writers_that_create_the_id_at_once_all_end_with_the_same_one(tmp_path: Path) -> None:
    catalog = tmp_path / "products.json"
    # spawn, not fork: a fork of the test process (threads, open clients) was slow to start, 30 s in CI
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(RACERS), context.Queue()
    racers = [context.Process(target=_race, args=(str(catalog), start, results)) for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    ids = [results.get(timeout=120) for _ in racers]
    for racer in racers:
        racer.join(10)
    assert len(set(ids)) == 1 and ids[0] is not None
    assert read_catalog_id(catalog) == ids[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["products.json.id"]


@pytest.mark.parametrize("content", [b"", b"not-a-uuid\n", b"x" * 10_000, b"\xff\xfe"])
def test_an_id_file_that_is_not_an_id_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    catalog = tmp_path / "products.json"
    catalog_id_path(catalog).write_bytes(content)
    with pytest.raises(CatalogCorruptError, match="products.json.id"):
        lock_name(catalog)


def test_a_fifo_as_id_file_is_refused_without_hanging(tmp_path: Path) -> None:
    catalog = tmp_path / "products.json"
    os.mkfifo(catalog_id_path(catalog))
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            lock_name(catalog)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO as the id file hung"
    assert isinstance(outcome[0], CatalogCorruptError) and "products.json.id" in str(outcome[0])


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_folder_that_cannot_hold_the_id_falls_back_to_the_path_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    catalog = tmp_path / "products.json"

    real_open = os.open

    def refuse_to_create(path: str, flags: int, *args: int) -> int:
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args)

    monkeypatch.setattr(catalog_id_module.os, "open", refuse_to_create)
    with caplog.at_level(logging.WARNING):
        assert lock_name(catalog) == path_lock_name(catalog)
    assert "cannot create" in caplog.text
    assert not catalog_id_path(catalog).exists()


def test_another_failure_to_create_the_id_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def full(path: str, flags: int, *args: int) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, flags, *args)

    monkeypatch.setattr(catalog_id_module.os, "open", full)
    with pytest.raises(Exception, match="products.json.id"):
        lock_name(tmp_path / "products.json")


BIND_MOUNT_PROBE = r"""
import subprocess, sys
from pathlib import Path
from worker.lock import lock_name
shared, first, second = map(Path, sys.argv[1:4])
for mount in (first, second):
    subprocess.run(["mount", "--bind", str(shared), str(mount)], check=True)
print(lock_name(first / "products.json"))
print(lock_name(second / "products.json"))
"""


def test_two_bind_mounts_of_one_folder_give_one_lock_name(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("the unshare command is not installed: cannot make private bind mounts")
    folders = [tmp_path / "shared", tmp_path / "host-a", tmp_path / "host-b"]
    for folder in folders:
        folder.mkdir()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", BIND_MOUNT_PROBE, *map(str, folders)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0 and ("not permitted" in done.stderr or "unshare failed" in done.stderr):
        pytest.skip(f"private bind mounts are not permitted here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.split()
    assert first == second


READ_ONLY_PROBE = r"""
import subprocess, sys
from pathlib import Path
from worker.lock import lock_name, path_lock_name
shared, mount = map(Path, sys.argv[1:3])
subprocess.run(["mount", "--bind", str(shared), str(mount)], check=True)
subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
catalog = mount / "products.json"
print(lock_name(catalog) == path_lock_name(catalog))
"""


def test_a_read_only_mount_without_an_id_falls_back_to_the_path_name_for_real(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("the unshare command is not installed: cannot make private bind mounts")
    shared, mount = tmp_path / "shared", tmp_path / "read-only"
    shared.mkdir()
    mount.mkdir()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", READ_ONLY_PROBE, str(shared), str(mount)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0 and ("not permitted" in done.stderr or "unshare failed" in done.stderr):
        pytest.skip(f"private bind mounts are not permitted here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"], done.stdout + done.stderr
    assert "cannot create" in done.stderr and "Read-only file system" in done.stderr
    assert list(shared.iterdir()) == []
