"""``catalog config``: the effective settings, where each came from, and what derives from them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import typer

from catalog_core.errors import EXIT_BAD_INPUT, EXIT_OK, SettingsError
from catalog_core.redis_client import display_url
from catalog_core.settings import Settings, check_timing_rules, unknown_setting_variables
from catalog_core.settings_rules import TIMING_FIELDS, timing_problems, variable
from catalog_cli.options import JsonOption, settings_from
from catalog_cli.output import err, out, print_json_line, show

URL_FIELDS = ("redis_url", "result_url")


def source_of(field: str, settings: Settings, environ: Mapping[str, str]) -> str:
    """``env`` or ``default``; a Redis URL also says when its password came from the password file."""
    # pydantic-settings matches names without regard to case, and so does this.
    source = "env" if variable(field) in {name.upper() for name in environ} else "default"
    if field in URL_FIELDS and getattr(settings, field) is not None and settings.redis_password_file is not None:
        source += ", password from CATALOG_REDIS_PASSWORD_FILE"
    return source


def effective_settings(settings: Settings, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every setting by its variable: its value (URLs with the password masked) and its source."""
    values = settings.model_dump(mode="json")
    for field in URL_FIELDS:
        if values[field] is not None:
            values[field] = display_url(values[field])
    return {variable(field): {"value": value, "source": source_of(field, settings, environ)}
            for field, value in values.items()}


def derived_settings(settings: Settings) -> dict[str, Any]:
    """What the settings imply and no variable sets directly."""
    return {
        "catalog_path": str(settings.catalog_path),
        "backup_path": str(settings.backup_path),
        "soft_time_limit": settings.soft_time_limit,
        "result_backend": display_url(settings.result_backend),
    }


DERIVED_LABELS = {
    "catalog_path": ("catalog file", "CATALOG_PATH, absolute"),
    "backup_path": ("backup folder", "CATALOG_BACKUP_DIR, or backups/ beside the catalog"),
    "soft_time_limit": ("soft time limit", "CATALOG_TASK_TIME_LIMIT - max(5, CATALOG_TASK_TIME_LIMIT // 10)"),
    "result_backend": ("result backend", "CATALOG_RESULT_URL, or CATALOG_REDIS_URL"),
}


def config(as_json: JsonOption = False) -> None:
    """Show the effective settings, where each came from, and the limits derived from them.

    Each CATALOG_* setting is shown with its value and its source: **env** (a CATALOG_*
    environment variable) or **default**. The Redis URLs say when their password came from
    CATALOG_REDIS_PASSWORD_FILE; passwords are always masked (**).

    Derived: the absolute catalog and backup paths, the result backend, and the soft time
    limit a batch gets before its hard limit:
    soft = CATALOG_TASK_TIME_LIMIT - max(5, CATALOG_TASK_TIME_LIMIT // 10).

    The timing rules, which the workers, beat, enqueue, status and apply enforce:
    CATALOG_LOCK_TIMEOUT < soft < CATALOG_TASK_TIME_LIMIT < CATALOG_VISIBILITY_TIMEOUT, and
    CATALOG_RETRY_BACKOFF_MAX < CATALOG_VISIBILITY_TIMEOUT. A broken rule is listed after the
    settings, with a combination that works.

    CATALOG_* variables that set nothing (a typo) are warned about with the nearest name.
    With --json: one JSON object with "settings", "derived", "unknown" and "problems".
    Exit 0 when the settings are valid, 2 when not.
    """
    settings = settings_from(None, None, check_timing=False)
    environ = dict(os.environ)
    effective = effective_settings(settings, environ)
    derived = derived_settings(settings)
    problems = timing_problems({field: getattr(settings, field) for field in TIMING_FIELDS})
    if as_json:
        unknown = [{"name": name, "did_you_mean": nearest} for name, nearest in unknown_setting_variables(environ)]
        print_json_line({"settings": effective, "derived": derived, "unknown": unknown, "problems": problems})
    else:
        print_settings(effective, derived)
    try:
        check_timing_rules(settings)
    except SettingsError as exc:
        err.print(f"[red]error:[/] {show(exc, keep_newlines=True)}", markup=True, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    raise typer.Exit(EXIT_OK)


def print_settings(effective: dict[str, dict[str, Any]], derived: dict[str, Any]) -> None:
    width = max(len(name) for name in effective)
    value_width = max(len(str(item["value"])) for item in effective.values() if item["value"] is not None)
    for name, item in effective.items():
        value = "-" if item["value"] is None else item["value"]
        out.print(f"{name:<{width}}  {show(value):<{value_width}}  {show(item['source'])}")
    out.print("\n[bold]derived[/]")
    for key, value in derived.items():
        label, how = DERIVED_LABELS[key]
        out.print(f"  {label:<{width - 2}}  {show(value):<{value_width}}  {show(how)}")
