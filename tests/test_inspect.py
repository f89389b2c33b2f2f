"""worker.inspect: verification and statistics, read without the lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog_core.errors import CatalogMissingError
from schemas import Product
from tests.helpers import product
from worker.catalog_digest import digest_of
from worker.commit import commit
from worker.inspect import catalog_stats, verify_catalog
from worker.state import CatalogState


def write_catalog(path: Path, products: list[dict]) -> Path:
    path.write_text(json.dumps(products), encoding="utf-8")
    return path


def test_a_valid_catalog_verifies_with_its_product_count(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "products.json", [product("A"), product("B")])
    assert verify_catalog(path) == (2, [])


def test_every_invalid_product_is_reported_with_its_field(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "products.json", [product("A", duration_hours=-1), product("B", prcing=[])])
    _, problems = verify_catalog(path)
    assert {(p.product_id, p.loc) for p in problems} == {("A", "duration_hours"), ("B", "prcing")}


def test_an_unparseable_catalog_is_one_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "products.json").write_text("[{")
    count, problems = verify_catalog(tmp_path / "products.json")
    assert count == 0 and "not valid JSON" in problems[0].msg


def test_a_missing_catalog_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(CatalogMissingError, match="no catalog file yet"):
        verify_catalog(tmp_path / "products.json")


def test_a_catalog_deleted_while_its_state_records_one_is_said_to_be_missing_not_new(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "products.json", [product("A")])
    commit(path, None, CatalogState(catalog_sha256=digest_of(path.read_bytes())), lambda: None)  # the state records it
    path.unlink()
    with pytest.raises(CatalogMissingError, match="missing, but products.json.state records one"):
        verify_catalog(path)


def test_a_deleted_state_file_is_a_problem_when_its_previous_version_shows_there_was_one(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "products.json", [product("A")])
    assert verify_catalog(path) == (1, [])  # no state ever: nothing to say
    commit(path, None, CatalogState(catalog_sha256=digest_of(path.read_bytes())), lambda: None)
    commit(path, None, CatalogState(catalog_sha256=digest_of(path.read_bytes())), lambda: None)  # .state.prev
    path.with_name("products.json.state").unlink()
    _, problems = verify_catalog(path)
    assert [p.msg for p in problems] == [
        "products.json.state is missing, but products.json.state.prev shows that this catalog had one: writes "
        "refuse until it is back (`catalog apply` says how)"]


def test_stats_count_products_by_state_category_and_city(tmp_path: Path) -> None:
    products = [
        Product.model_validate(product("A", category="Tour", destination_city="Dubai")).to_record(),
        Product.model_validate(product("B", category="Tour", active=False)).to_record(),
        Product.model_validate(product("C", category="Museum", destination_city="Dubai")).to_record(),
    ]
    path = write_catalog(tmp_path / "products.json", products)
    figures = catalog_stats(path, tmp_path / "backups")
    assert (figures.products, figures.active, figures.inactive) == (3, 2, 1)
    assert figures.by_category == {"Tour": 2, "Museum": 1}
    assert figures.by_city == {"Dubai": 2, "(none)": 1}
    assert figures.backups == 0 and figures.newest_backup is None
    assert figures.size_bytes == path.stat().st_size


def test_stats_of_the_seed_catalog(seed_dir: Path) -> None:
    figures = catalog_stats(seed_dir / "products.json", seed_dir / "no-backups-here")
    assert figures.products == 52
