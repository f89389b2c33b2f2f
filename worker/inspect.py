"""Read-only views of the catalog: verification and statistics. No lock: readers never take it."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from catalog_core.errors import CatalogCorruptError, CatalogMissingError
from schemas import Product, RecordError, format_loc
from worker.backups import list_backups
from worker.catalog_digest import describes, digest_of
from worker.catalog_file import parse_catalog, read_catalog_bytes
from worker.state import had_state, previous_state_path, read_state, state_path


def _read_existing(path: Path) -> bytes:
    data = read_catalog_bytes(path)  # regular files only: a FIFO or a device is refused, not read
    if data is None:
        if _state_records_a_catalog(path):
            raise CatalogMissingError(
                f"{path}: the catalog file is missing, but {state_path(path).name} records one: it was deleted or "
                "moved, and writes refuse until it is back (`catalog backups list`, then `catalog backups restore "
                "NAME`)")
        raise CatalogMissingError(f"{path}: no catalog file yet (the first applied batch creates it)")
    return data


def _state_records_a_catalog(path: Path) -> bool:
    try:
        state = read_state(state_path(path))
    except CatalogCorruptError:
        return False  # an unreadable state says nothing; the writers report it
    return state is not None and state.catalog_sha256 is not None


def _state_problems(path: Path, data: bytes) -> list[RecordError]:
    """The state file must describe this very catalog (its digest), or a commit was interrupted."""
    try:
        state = read_state(state_path(path))
    except CatalogCorruptError as exc:
        return [RecordError(index=None, msg=str(exc))]
    if state is None:
        if had_state(path):
            return [RecordError(index=None, msg=(
                f"{state_path(path).name} is missing, but {previous_state_path(path).name} shows that this catalog "
                "had one: writes refuse until it is back (`catalog apply` says how)"))]
        return []
    digest = digest_of(data)
    if describes(state.catalog_sha256, data, digest):
        return []
    return [RecordError(index=None, msg=(
        f"{state_path(path).name} describes another version of the catalog (digest {state.catalog_sha256}, "
        f"file has {digest}): a commit was interrupted or the file was edited by hand; the next "
        "write recovers (`catalog apply` of an empty batch does it now)"))]


def verify_catalog(path: Path) -> tuple[int, list[RecordError]]:
    """Number of products and every problem: parse errors, invalid products, disagreement with the state."""
    data = _read_existing(path)
    try:
        products = parse_catalog(data, path)
    except CatalogCorruptError as exc:
        return 0, [RecordError(index=None, msg=str(exc))]
    problems = _state_problems(path, data)
    for index, product in enumerate(products):
        try:
            Product.model_validate(product)
        except ValidationError as exc:
            problems.extend(
                RecordError(index=index, product_id=product["product_id"], loc=format_loc(e["loc"]), msg=e["msg"])
                for e in exc.errors(include_url=False, include_input=False)
            )
    return len(products), problems


@dataclass(frozen=True)
class CatalogStats:
    """What an operator wants to know about the catalog at a glance."""

    path: str
    products: int
    active: int
    inactive: int
    by_category: dict[str, int]
    by_city: dict[str, int]
    size_bytes: int
    last_change: str
    backups: int
    newest_backup: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def catalog_stats(path: Path, backup_dir: Path) -> CatalogStats:
    data = _read_existing(path)
    products = parse_catalog(data, path)
    stat = path.stat()
    backups = list_backups(path, backup_dir)
    active = sum(1 for p in products if p.get("active", True) is not False)

    def tally(field: str) -> dict[str, int]:
        counts = Counter(str(p.get(field) or "(none)") for p in products)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    return CatalogStats(
        path=str(path),
        products=len(products),
        active=active,
        inactive=len(products) - active,
        by_category=tally("category"),
        by_city=tally("destination_city"),
        size_bytes=len(data),
        last_change=dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).isoformat(timespec="seconds"),
        backups=len(backups),
        newest_backup=backups[-1].name if backups else None,
    )
