"""``catalog backups``: list, rotate and restore backups of the catalog."""

from __future__ import annotations

from typing import Annotated

import typer

from catalog_cli.options import CatalogOption, JsonOption, RedisUrlOption, settings_from
from catalog_cli.output import err, out, print_json_line, show
from worker.backup_policy import BackupPolicy
from worker.backups import Backup, BackupScan, RotationReport, rotate_backups, scan_backups
from worker.store import CatalogStore

app = typer.Typer(help="List, rotate and restore backups of the catalog.", no_args_is_help=True,
                  rich_markup_mode="markdown")


@app.command("list")
def list_command(catalog: CatalogOption = None, as_json: JsonOption = False) -> None:
    """List backups, oldest first, with their UTC time, size and whether they are compressed; then the total."""
    settings = settings_from(catalog, None, check_timing=False)
    scan = scan_backups(settings.catalog_path, settings.backup_path)
    width = max((len(backup.name) for backup in scan.backups), default=0)
    for backup in scan.backups:
        if as_json:
            print_json_line({"name": backup.name, "taken_at": backup.taken_at.isoformat(),
                             "size_bytes": backup.size_bytes, "compressed": backup.compressed})
        else:
            out.print(f"{show(backup.name):<{width}}  {backup.taken_at:%Y-%m-%d %H:%M:%S} UTC  "
                      f"{backup.size_bytes:>15,} bytes  {'gzip' if backup.compressed else 'plain'}")
    if not as_json:
        if scan.backups:
            out.print(_total_line(scan.backups, settings.backup_max_bytes))
        else:
            out.print(f"no backups in {show(settings.backup_path)}")
    report_skipped(scan)


def _total_line(backups: list[Backup], cap: int) -> str:
    total = sum(backup.size_bytes for backup in backups)
    compressed = sum(1 for backup in backups if backup.compressed)
    line = f"{len(backups)} backup(s), {compressed} compressed: {total:,} bytes"
    if cap:
        return f"{line} of the {cap:,}-byte cap ({total / cap:.0%}, CATALOG_BACKUP_MAX_BYTES)"
    return f"{line} (no cap: CATALOG_BACKUP_MAX_BYTES=0)"


def report_skipped(scan: BackupScan | RotationReport) -> None:
    """Entries named like backups that are not backups: on stderr, so --json output stays backups only."""
    for entry in scan.skipped:
        err.print(f"skipped {show(entry.name)}: {show(entry.reason)} (not listed, never deleted)")


@app.command()
def rotate(
    days: Annotated[float | None, typer.Option(help="Keep backups this many days. [env: "
                                               "CATALOG_BACKUP_RETENTION_DAYS; default: 7]", show_default=False,
                                               min=0)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted and compressed.")]
    = False,
    catalog: CatalogOption = None,
) -> None:
    """Thin, compress and cap the backups, as beat does every CATALOG_ROTATE_EVERY seconds.

    Every backup of the last CATALOG_BACKUP_KEEP_ALL_HOURS is kept, then the newest of each UTC
    hour up to CATALOG_BACKUP_HOURLY_DAYS, then the newest of each UTC day up to the retention.
    Those older than CATALOG_BACKUP_COMPRESS_AFTER_HOURS are gzipped. The oldest go first past
    CATALOG_BACKUP_MAX_BYTES. The newest two are always kept.
    """
    settings = settings_from(catalog, None, check_timing=False)
    policy = BackupPolicy.from_settings(settings, retention_days=days)
    report = rotate_backups(settings.catalog_path, settings.backup_path, policy, dry_run=dry_run)
    deleting, compressing = ("would delete", "would compress") if dry_run else ("deleted", "compressed")
    for backup, reason in report.deleted:
        out.print(f"{deleting} {show(backup.name)}: {reason}")
    for backup in report.compressed:
        out.print(f"{compressing} {show(backup.name)}")
    for backup, reason in report.failed:
        err.print(f"could not compress {show(backup.name)}: {show(reason)} (kept as it is)")
    report_skipped(report)
    out.print(f"{deleting} {len(report.deleted)} backup(s), {compressing} {len(report.compressed)}, kept "
              f"{len(report.kept)} ({report.total_bytes:,} bytes)")


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
