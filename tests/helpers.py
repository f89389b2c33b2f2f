"""Small builders for test data."""

from __future__ import annotations

import json
import os
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
