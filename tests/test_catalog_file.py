"""worker.catalog_file: the catalog's format, and refusing files that are not catalogs."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from catalog_core.errors import CatalogCorruptError
from worker.catalog_file import parse_catalog, read_catalog, serialize_catalog


def test_an_absent_catalog_is_empty(tmp_path: Path) -> None:
    assert read_catalog(tmp_path / "products.json") == []


def test_serialized_catalog_is_two_space_indented_utf8_with_non_ascii_kept() -> None:
    data = serialize_catalog([{"product_id": "A", "product_name": "Café – Dubai", "price": 1.0}])
    text = data.decode("utf-8")
    assert '\n  {\n    "product_id": "A",' in text
    assert "Café – Dubai" in text
    assert text.endswith("]\n")
    assert json.loads(text) == [{"product_id": "A", "product_name": "Café – Dubai", "price": 1.0}]


def test_serialization_keeps_field_order() -> None:
    data = serialize_catalog([{"z": 1, "product_id": "A", "a": 2}])
    assert list(json.loads(data)[0]) == ["z", "product_id", "a"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'[{"product_id": "A"},', "not valid JSON"),
        (b'{"product_id": "A"}', "JSON array"),
        (b'[{"name": "no id"}]', "product_id"),
        (b'["A"]', "product_id"),
        (b'[{"product_id": "A"}, {"product_id": "A"}]', "appears twice"),
    ],
)
def test_files_that_are_not_catalogs_are_refused_with_a_pointer_to_backups(content: bytes, reason: str) -> None:
    with pytest.raises(CatalogCorruptError, match=reason) as info:
        parse_catalog(content, "products.json")
    assert "catalog backups" in str(info.value)


def test_a_parse_error_names_line_and_column() -> None:
    with pytest.raises(CatalogCorruptError, match=r"line 3, column"):
        parse_catalog(b'[\n  {"product_id": "A"},\n  {oops}\n]', "products.json")


def test_a_catalog_path_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "products.json"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_catalog(fifo)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects what came out
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():
        with open(fifo, "wb"):
            pass
        reader.join(timeout=10)
        pytest.fail("reading a FIFO as the catalog blocked waiting for a writer")
    assert isinstance(outcome[0], CatalogCorruptError) and "not a regular file" in str(outcome[0])


def test_a_device_as_the_catalog_is_refused_before_any_read() -> None:
    with pytest.raises(CatalogCorruptError, match="not a regular file"):
        read_catalog(Path("/dev/zero"))


def test_a_catalog_that_is_a_symlink_loop_is_a_clear_error(tmp_path: Path) -> None:
    loop = tmp_path / "products.json"
    loop.symlink_to(loop)
    with pytest.raises(CatalogCorruptError, match="symbolic links"):
        read_catalog(loop)


@pytest.mark.parametrize("content", [b'[{"product_id": "A", "n": ' + b"9" * 5000 + b"}]", b"[" * 100_000])
def test_a_catalog_with_a_huge_integer_or_deep_nesting_is_corrupt_not_a_traceback(content: bytes) -> None:
    with pytest.raises(CatalogCorruptError, match="line 1"):
        parse_catalog(content, "products.json")
