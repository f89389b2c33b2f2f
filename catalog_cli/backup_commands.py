"""``catalog backups``: list, rotate and restore backups of the catalog."""

from __future__ import annotations

from typing import Annotated

import typer

from pathlib import Path

from catalog_cli.options import CatalogOption, JsonOption, RedisUrlOption, settings_from
from catalog_cli.output import err, out, print_json_line, show
from worker.backups import BackupScan, rotate_backups, scan_backups
from worker.store import CatalogStore

app = typer.Typer(help="List, rotate and restore backups of the catalog.", no_args_is_help=True,
                  rich_markup_mode="markdown")


@app.command("list")
def list_command(catalog: CatalogOption = None, as_json: JsonOption = False) -> None:
    """List backups, oldest first, with their UTC time and size."""
    settings = settings_from(catalog, None, check_timing=False)
    scan = scan_backups(settings.catalog_path, settings.backup_path)
    for backup in scan.backups:
        size = _size(backup.path)
        if as_json:
            print_json_line({"name": backup.name, "taken_at": backup.taken_at.isoformat(), "size_bytes": size})
        else:
            out.print(f"{show(backup.name)}  {backup.taken_at:%Y-%m-%d %H:%M:%S} UTC  {size:,} bytes")
    if not scan.backups and not as_json:
        out.print(f"no backups in {show(settings.backup_path)}")
    report_skipped(scan)


def _size(path: Path) -> int:
    """The backup's own size (lstat: a backup is a regular file, never a link); 0 if rotated meanwhile."""
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0


def report_skipped(scan: BackupScan) -> None:
    """Entries named like backups that are not backups: on stderr, so --json output stays backups only."""
    for entry in scan.skipped:
        err.print(f"skipped {show(entry.name)}: {show(entry.reason)} (not listed, never deleted)")


@app.command()
def rotate(
    days: Annotated[float | None, typer.Option(help="Keep this many days. [env: CATALOG_BACKUP_RETENTION_DAYS; "
                                               "default: 7]", show_default=False, min=0)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
    catalog: CatalogOption = None,
) -> None:
    """Delete backups older than the retention (by the time in their name). The newest is always kept."""
    settings = settings_from(catalog, None, check_timing=False)
    retention = settings.backup_retention_days if days is None else days
    removed = rotate_backups(settings.catalog_path, settings.backup_path, retention, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for backup in removed:
        out.print(f"{verb} {show(backup.name)}")
    report_skipped(scan_backups(settings.catalog_path, settings.backup_path))
    out.print(f"{verb} {len(removed)} backup(s) older than {retention:g} day(s)")


@app.command()
def restore(
    name: Annotated[str, typer.Argument(help="A backup's file name, as `catalog backups list` shows it.")],
    catalog: CatalogOption = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Put a backup back as the catalog, under the lock. The current version is backed up first."""
    settings = settings_from(catalog, redis_url, check_timing=False)
    previous = CatalogStore(settings).restore(name)
    out.print(f"restored {show(name)} as {show(settings.catalog_path)}")
    if previous:
        out.print(f"the version it replaced is kept as {show(previous.name)} (restore it to undo)")
