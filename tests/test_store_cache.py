"""What a store keeps between writes (the parsed catalog and state) is never trusted past a change by anyone else."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from catalog_core.settings import Settings
from tests.helpers import product
from worker import catalog_image
from worker import recovery as recovery_module
from worker.backups import list_backups
from worker.catalog_file import FileSeen, serialize_catalog
from worker.store import CatalogStore


def ids(settings: Settings) -> list[str]:
    return [p["product_id"] for p in json.loads(settings.catalog_path.read_text())]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every time a writer reads the catalog file."""
    seen: list[Path] = []
    real = recovery_module.read_catalog_file

    def counting(path: Path) -> tuple[bytes, FileSeen] | tuple[None, None]:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(recovery_module, "read_catalog_file", counting)
    return seen


def test_a_warm_store_does_not_read_the_catalog_it_wrote_itself(settings: Settings, reads: list[Path]) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    reads.clear()
    store.apply([product("B")], "b2")
    store.apply([{"product_id": "A", "product_name": "Renamed"}], "b3")
    assert reads == []
    assert ids(settings) == ["A", "B"]


def test_a_commit_by_another_writer_is_read_not_overwritten(settings: Settings, reads: list[Path]) -> None:
    mine, other = CatalogStore(settings), CatalogStore(settings)
    mine.apply([product("A")], "b1")
    other.apply([product("B")], "b2")
    reads.clear()
    mine.apply([product("C")], "b3")
    assert reads, "the other writer's commit went unnoticed"
    assert ids(settings) == ["A", "B", "C"]


def test_a_catalog_another_writer_of_ours_committed_is_cut_into_products_not_parsed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, other = CatalogStore(settings), CatalogStore(settings)
    mine.apply([product("A")], "b1")
    other.apply([product("B")], "b2")
    parsed: list[object] = []
    monkeypatch.setattr(catalog_image, "parse_catalog", lambda *args: parsed.append(args) or [])
    mine.apply([{"product_id": "B", "product_name": "Renamed"}], "b3")
    assert parsed == []
    assert ids(settings) == ["A", "B"] and json.loads(settings.catalog_path.read_text())[1]["product_name"] == "Renamed"


def test_a_catalog_in_another_layout_is_parsed(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    products = json.loads(settings.catalog_path.read_text())
    settings.catalog_path.write_text(json.dumps(products, indent=2))  # by hand, as the stdlib writes it
    store.apply([product("B")], "b2")
    assert settings.catalog_path.read_bytes() == serialize_catalog([*products, json.loads(
        settings.catalog_path.read_text())[1]])


def test_a_commit_that_changed_only_the_state_keeps_the_parsed_catalog_and_reads_the_new_ledger(
    settings: Settings, reads: list[Path]
) -> None:
    mine, other = CatalogStore(settings), CatalogStore(settings)
    mine.apply([product("A")], "b1")
    assert other.apply([{"product_id": "A", "pricing": "bad"}], "rejected-by-other").status.value == "rejected"
    reads.clear()
    assert mine.apply([product("B")], "rejected-by-other").status.value == "duplicate"  # the other's ledger entry
    assert reads == []  # the catalog did not change: its parsed copy still holds


def test_a_hand_edit_of_the_catalog_is_adopted_not_overwritten(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    edited = json.loads(settings.catalog_path.read_text()) + [product("BY-HAND")]
    settings.catalog_path.write_bytes(serialize_catalog(edited))  # in place: same inode
    store.apply([product("B")], "b2")
    assert ids(settings) == ["A", "BY-HAND", "B"]


def test_a_hand_edit_of_the_same_size_is_still_seen(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    before = settings.catalog_path.read_bytes()
    settings.catalog_path.write_bytes(before.replace(b'"A"', b'"Z"'))  # same size, same inode, newer mtime
    store.apply([product("B")], "b2")
    assert ids(settings) == ["Z", "B"]


def test_a_restore_by_another_store_is_seen(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    store.apply([product("B")], "b2")
    [first] = list_backups(settings.catalog_path, settings.backup_path)
    CatalogStore(settings).restore(first.name)  # back to the catalog before b2: only A
    store.apply([product("C")], "b3")
    assert ids(settings) == ["A", "C"]


def test_a_replaced_state_file_is_read_again(settings: Settings) -> None:
    store, other = CatalogStore(settings), CatalogStore(settings)
    store.apply([product("A")], "b1")
    other.apply([product("B")], "b2")
    # b2 is in the other writer's ledger entry only: our copy of the state must not hide it.
    assert store.apply([product("B")], "b2").status.value == "duplicate"


def test_a_catalog_swapped_for_another_file_of_the_same_size_and_mtime_is_still_seen(settings: Settings) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    path = settings.catalog_path
    status = os.stat(path)
    swapped = path.with_name("swapped.json")
    swapped.write_bytes(path.read_bytes().replace(b'"A"', b'"Q"'))
    os.utime(swapped, ns=(status.st_atime_ns, status.st_mtime_ns))
    os.replace(swapped, path)  # a new inode
    store.apply([product("B")], "b2")
    assert ids(settings) == ["Q", "B"]


def test_a_hand_edit_in_place_that_puts_the_mtime_back_is_still_seen(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    path = settings.catalog_path
    before = os.stat(path)
    path.write_bytes(path.read_bytes().replace(b'"A"', b'"Z"'))  # same size, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the mtime put back, as `touch -d` does
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    store.apply([product("B")], "b2")
    assert ids(settings) == ["Z", "B"]
    assert "changed outside catalog-ingest" in caplog.text


def test_a_write_that_changes_nothing_leaves_the_catalog_file_untouched(settings: Settings, reads: list[Path]) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1")
    before = os.stat(settings.catalog_path)
    assert store.apply([product("A")], "b2").status.value == "unchanged"
    assert store.apply([{"product_id": "A", "pricing": "bad"}], "b3").status.value == "rejected"
    # Not even linked as a backup and unlinked again: a change of its ctime would mean "edited by hand".
    assert os.stat(settings.catalog_path).st_ctime_ns == before.st_ctime_ns
    assert len(list_backups(settings.catalog_path, settings.backup_path)) == 0
    reads.clear()
    store.apply([product("B")], "b4")
    assert reads == []  # and the next write still trusts its copy
    assert ids(settings) == ["A", "B"]
