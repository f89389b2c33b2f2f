"""Options every command shares, and the settings they build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from catalog_core.settings import Settings, load_settings

CatalogOption = Annotated[
    Path | None,
    typer.Option("--catalog", "-c", help="Catalog file. [env: CATALOG_PATH; default: ./data/products.json]",
                 show_default=False),
]
RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis for the lock and the queue. [env: CATALOG_REDIS_URL; "
                 "default: redis://localhost:6379/0]", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output: one JSON object per line.")]


def settings_from(catalog: Path | None, redis_url: str | None) -> Settings:
    """Settings from the environment, with the command's options winning."""
    return load_settings(path=catalog, redis_url=redis_url)
