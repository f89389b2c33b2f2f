"""Options every command shares, and the settings they build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from catalog_core.errors import SettingsError
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
    """Settings from the environment, with the command's options winning; the paths must resolve."""
    settings = load_settings(path=catalog, redis_url=redis_url)
    for name, path, resolve in (("CATALOG_PATH", settings.path, lambda: settings.catalog_path),
                                ("CATALOG_BACKUP_DIR", settings.backup_dir or settings.path, lambda: settings.backup_path)):
        try:
            resolve()
        except (RuntimeError, OSError) as exc:  # pathlib raises RuntimeError for a loop of symbolic links
            raise SettingsError(f"{path}: cannot resolve the path ({name}): a loop of symbolic links or an "
                                f"unreadable folder ({exc})") from None
    return settings
