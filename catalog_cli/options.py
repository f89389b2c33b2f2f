"""Options every command shares, and the settings they build."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from catalog_core.errors import SettingsError
from catalog_core.settings import Settings, load_settings, unknown_setting_variables
from catalog_core.settings_rules import unknown_variable_warning
from catalog_cli.output import err, show

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


def warn_unknown_variables() -> None:
    """A warning on stderr for each ``CATALOG_*`` variable that sets nothing: a typo is not ignored silently."""
    for name, nearest in unknown_setting_variables(os.environ):
        err.print(f"[yellow]warning:[/] {show(unknown_variable_warning(name, nearest))}", markup=True,
                  highlight=False)


def settings_from(catalog: Path | None, redis_url: str | None, *, check_timing: bool = True) -> Settings:
    """Settings from the environment, with the command's options winning; the paths must resolve.

    ``check_timing=False`` for a command that neither runs, sends nor follows Celery tasks (stats,
    verify, validate, backups): it runs even when the timing rules between the Celery settings
    (catalog_core/settings_rules.py RULES) are broken, since it uses none of them. The default
    checks, so that a new command refuses too much rather than too little.
    """
    warn_unknown_variables()
    settings = load_settings(path=catalog, redis_url=redis_url, check_timing=check_timing)
    for variable, path, resolve in (("CATALOG_PATH", settings.path, lambda: settings.catalog_path),
                                    ("CATALOG_BACKUP_DIR", settings.backup_dir or settings.path,
                                     lambda: settings.backup_path)):
        try:
            resolve()
        except (RuntimeError, OSError) as exc:  # pathlib raises RuntimeError for a loop of symbolic links
            raise SettingsError(f"{path}: cannot resolve the path ({variable}): a loop of symbolic links or an "
                                f"unreadable folder ({exc})") from None
    return settings
