"""Small builders for test data."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catalog_core.settings import Settings


def product(product_id: str, **fields: Any) -> dict[str, Any]:
    """A minimal valid new product, with overrides."""
    base: dict[str, Any] = {
        "product_id": product_id,
        "product_name": f"Product {product_id}",
        "pricing": [{"tier_name": "Adult", "price_aed": 100.0, "currency": "AED"}],
        "inclusions": ["Transfers"],
    }
    base.update(fields)
    return base


def catalog_digest(data: bytes) -> str:
    """The digest a state records of a catalog file, as a model written apart from
    worker/catalog_digest.py: for a file in the writers' layout (``[``, products indented two
    spaces and separated by ``,`` at line ends, ``]``), the sha256 of a fixed prefix and of each
    product's sha256 in order; for any other file, its sha256."""
    if data == b"[]\n":
        entries: list[bytes] = []
    elif data.startswith(b"[\n  {\n") and data.endswith(b"\n  }\n]\n"):
        entries = re.split(rb"(?<=\n  }),\n(?=  \{\n)", data[2:-3])
    else:
        return hashlib.sha256(data).hexdigest()
    listed = b"".join(hashlib.sha256(entry).digest() for entry in entries)
    return hashlib.sha256(b"catalog-ingest entries sha256 v1\n" + listed).hexdigest()


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points a `catalog` subprocess at the test's catalog and Redis."""
    return {**os.environ, **settings.to_env(), "COLUMNS": "200", **extra}


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
