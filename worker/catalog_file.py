"""Reading and serializing the catalog file. No locking here: readers never take the lock."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from catalog_core.errors import CatalogCorruptError
from worker.atomic import read_regular_file

RESTORE_HINT = "Nothing was overwritten. See `catalog backups list` and `catalog backups restore NAME`."


def parse_catalog(data: bytes, source: Path | str) -> list[dict[str, Any]]:
    """Parse catalog bytes and check their shape: a JSON array of objects with unique string product_ids.

    Field-level validation is left to ``catalog verify`` and to the merge, which validates
    every product it touches; checking the shape is enough to know the file is ours.
    """
    if not data.strip():
        raise CatalogCorruptError(f"{source}: the catalog file is empty. {RESTORE_HINT}")
    try:
        products = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CatalogCorruptError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). {RESTORE_HINT}"
        ) from None
    if not isinstance(products, list):
        raise CatalogCorruptError(f"{source}: a catalog is a JSON array, found {type(products).__name__}. {RESTORE_HINT}")
    seen: set[str] = set()
    for index, product in enumerate(products):
        product_id = product.get("product_id") if isinstance(product, dict) else None
        if not isinstance(product_id, str):
            raise CatalogCorruptError(f"{source}: entry {index} is not a product with a product_id. {RESTORE_HINT}")
        if product_id in seen:
            raise CatalogCorruptError(f"{source}: product_id {product_id!r} appears twice. {RESTORE_HINT}")
        seen.add(product_id)
    return products


# A catalog file as a writer saw it: inode, size, mtime and ctime (ns). The ctime is the one a
# hand cannot put back: an edit in place that restores the size and the mtime (`touch -d`) still moves it.
FileSeen = tuple[int, int, int, int]


def seen_of(status: os.stat_result) -> FileSeen:
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def seen_now(path: Path) -> FileSeen | None:
    """The catalog file as it is now (``seen_of``); None when there is none."""
    try:
        return seen_of(os.stat(path))
    except FileNotFoundError:
        return None


def read_catalog_bytes(path: Path) -> bytes | None:
    """The catalog file's bytes; None when there is no catalog yet.

    Only a regular file is a catalog: a FIFO is not waited on (opened non-blocking, checked with
    ``fstat``) and a device is never read, so a wrong CATALOG_PATH cannot hang or fill memory.
    """
    return read_catalog_file(path)[0]


def read_catalog_file(path: Path) -> tuple[bytes, FileSeen] | tuple[None, None]:
    """``read_catalog_bytes``, and the file's identity taken from the descriptor its bytes came from."""
    read = read_regular_file(path, lambda reason: CatalogCorruptError(
        f"{path}: not readable as a catalog: {reason}. {RESTORE_HINT}"))
    return (None, None) if read is None else (read[0], seen_of(read[1]))


def read_catalog(path: Path) -> list[dict[str, Any]]:
    """The catalog's products; an absent file is an empty catalog."""
    data = read_catalog_bytes(path)
    return [] if data is None else parse_catalog(data, path)


def serialize_catalog(products: Sequence[dict[str, Any]]) -> bytes:
    """UTF-8 JSON, 2-space indent, non-ASCII kept as is, one trailing newline: readable and diffable."""
    return orjson.dumps(list(products), option=orjson.OPT_INDENT_2) + b"\n"
