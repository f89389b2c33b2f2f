"""``catalog diff`` and ``catalog apply --dry-run``: what a batch would change, or what differs between versions.

Nothing here writes, locks or talks to Redis: the catalog is read as any reader reads it
(readers take no lock: the file is replaced atomically), and a batch is previewed by the same
merge that applies it (worker/catalog_diff.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

from catalog_core.errors import EXIT_OK, EXIT_REJECTED, BackupNotFoundError, CatalogCorruptError, InputFileError
from catalog_core.settings import Settings
from catalog_cli.options import CatalogOption, JsonOption, settings_from
from catalog_cli.output import describe_error, out, print_json_line, show
from producers.files import STDIN, BatchFile
from worker.backup_compression import COMPRESSED_SUFFIX
from worker.backups import Backup, BackupScan, find_backup, read_backup, scan_backups
from worker.catalog_diff import ABSENT, CatalogDiff, diff_catalogs, preview_batch, value_changes
from worker.catalog_file import RESTORE_HINT, parse_catalog, read_catalog
from worker.changes import ProductChange

MAX_VALUE_CHARS = 80  # a longer value (as compact JSON) is cut, with an ellipsis: --json has it whole

SourcesArgument = Annotated[
    list[str],
    typer.Argument(help="Batch files (FILE...), or one or two backup names (BACKUP [BACKUP]).",
                   metavar="FILE_OR_BACKUP", show_default=False),
]


def diff(sources: SourcesArgument, catalog: CatalogOption = None, as_json: JsonOption = False) -> None:
    """Show what batch files would change in the catalog, or what differs between two versions of it.

    **Batch files:** the same as `catalog apply --dry-run FILE...`: each file is merged in
    memory, as `apply` would merge it now, after the files before it; nothing is written,
    no lock and no sequence number is taken. Exit 0 when every file would apply, 1 when
    one would be rejected (its problems are listed; nothing of it would change), 2 for
    bad input.

    **Backups:** one name compares that backup with the current catalog; two compare the
    first with the second. Names are those `catalog backups list` shows; gzipped ones are
    read transparently. Exit 0 (also when they differ).

    An argument is a backup when it is a plain name (no `/`) of a backup in the backup
    folder; anything else is a batch file (write `./NAME` for a file named like a backup).

    Each product that differs gets a block: `+ ID (created)`, `~ ID` with one
    `field: old -> new` line per changed value, `- ID (removed)`; then a summary line.
    `--json` prints one JSON document per batch file, or one for the two versions.

    Examples:

        catalog diff feed.jsonl

        catalog diff products_20261129_101500_000000.json

        catalog diff products_20261128_090000_000000.json.gz products_20261129_101500_000000.json --json
    """
    settings = settings_from(catalog, None, check_timing=False)
    files, backups = _classify(sources, settings)
    if files and backups:
        raise typer.BadParameter("give batch files or backup names, not both", param_hint="FILE_OR_BACKUP")
    if files:
        raise typer.Exit(preview_files(files, settings, as_json))
    if len(backups) > 2:
        raise typer.BadParameter(f"compare one backup with the catalog, or two backups; got {len(backups)} names",
                                 param_hint="BACKUP [BACKUP]")
    before = _read_backup_catalog(backups[0], settings)
    if len(backups) == 2:
        after, after_label = _read_backup_catalog(backups[1], settings), backups[1].name
    else:
        after, after_label = read_catalog(settings.catalog_path), f"{settings.catalog_path} (current)"
    result = diff_catalogs(before, after)
    if as_json:
        try:  # both fail before anything is written
            print_json_line(diff_payload(result, backups[0].name, after_label, "versions", None))
        except (ValueError, orjson.JSONEncodeError) as exc:  # pydantic's and orjson's depth limits
            raise InputFileError(f"{backups[0].name} -> {after_label}: a value is nested too deeply to write as "
                                 f"JSON ({exc}); without --json it is shown cut") from None
    else:
        render(result, backups[0].name, after_label, None)
    raise typer.Exit(EXIT_OK)


def preview_files(files: list[Path], settings: Settings, as_json: bool) -> int:
    """Preview each file as apply would apply it, after the ones before it; the exit code of them all."""
    from catalog_cli.store_commands import read_all  # here: store_commands' apply --dry-run calls this module

    batches = read_all(files, settings.max_batch_bytes, settings.max_batch_items)
    products = read_catalog(settings.catalog_path)
    label = str(settings.catalog_path)
    exit_code = EXIT_OK
    for batch in batches:
        preview = preview_batch(products, batch.records)
        products = preview.products_after
        if preview.diff.rejected:
            exit_code = EXIT_REJECTED
        if as_json:
            print_json_line(diff_payload(preview.diff, label, batch.source, "batch", batch))
        else:
            render(preview.diff, label, batch.source, batch)
    return exit_code


def _classify(sources: list[str], settings: Settings) -> tuple[list[Path], list[Backup]]:
    """Split the arguments into batch files and backups (see `catalog diff --help` for the rule)."""
    files: list[Path] = []
    backups: list[Backup] = []
    scan: BackupScan | None = None
    for source in sources:
        if source == STDIN or Path(source).name != source or source in {".", ".."}:
            files.append(Path(source))
            continue
        if scan is None:  # listed once, and only when a plain name could be a backup
            scan = scan_backups(settings.catalog_path, settings.backup_path)
        wanted = {source, source.removesuffix(COMPRESSED_SUFFIX), source.removesuffix(COMPRESSED_SUFFIX)
                  + COMPRESSED_SUFFIX}
        names = {path.name for backup in scan.backups for path in backup.files}
        if wanted & names or source in {entry.name for entry in scan.skipped}:
            backups.append(find_backup(settings.catalog_path, settings.backup_path, source))
        elif Path(source).exists():
            files.append(Path(source))
        else:
            raise InputFileError(f"{source}: no such batch file, and no backup of that name in "
                                 f"{settings.backup_path} (see `catalog backups list`)")
    return files, backups


def _read_backup_catalog(backup: Backup, settings: Settings) -> list[dict[str, Any]]:
    """The backup's products; a backup that is not a catalog is a bad name to give (exit 2), not a corrupt catalog."""
    data = read_backup(backup, settings.max_file_bytes)
    try:
        return parse_catalog(data, "")
    except CatalogCorruptError as exc:
        reason = str(exc).removeprefix(": ").removesuffix(RESTORE_HINT).strip()
        raise BackupNotFoundError(f"{backup.name} cannot be read as a backup: {reason}") from None


def shown_value(value: Any) -> str:
    """A value as compact JSON, cut to MAX_VALUE_CHARS, safe for the terminal and for rich markup."""
    if value is ABSENT:
        return "(absent)"
    text = ""
    for token in _json_tokens(value):
        text += token
        if len(text) > MAX_VALUE_CHARS:
            return show(text[: MAX_VALUE_CHARS - 1] + "…")
    return show(text)


def _json_tokens(value: Any) -> Iterator[str]:
    """Compact JSON, lazily: only what is shown gets encoded, so a value nested 1,000 levels deep
    (only an unvalidated backup can hold one) never recurses deeper than the characters shown."""
    if isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + json.dumps(key, ensure_ascii=False) + ":"
            yield from _json_tokens(item)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _json_tokens(item)
        yield "]"
    else:
        yield json.dumps(value, ensure_ascii=False)


def render(result: CatalogDiff, before: str, after: str, batch: BatchFile | None) -> None:
    """One block per product that differs, then one summary line."""
    if batch is not None:
        out.print(f"[bold]{show(after)}[/] against [bold]{show(before)}[/] (dry run: nothing written)")
    else:
        out.print(f"[bold]{show(before)}[/] -> [bold]{show(after)}[/]")
    if result.rejected:
        out.print(f"[red]would be rejected[/]: {len(result.errors)} problem(s); nothing would change")
        for error in result.errors:
            out.print(f"  - {escape(describe_error(error, batch))}")
        return
    for change in result.products:
        _render_product(change)
    for change in result.removed:
        out.print(f"[red]- {show(change.product_id)}[/] (removed)")
    summary = f"{result.created} created, {result.changed} changed, {result.unchanged} unchanged"
    if batch is None:
        summary += f", {len(result.removed)} removed"
        if result.order_changed:
            summary += "; the order of the products differs"
    elif not result.differs:
        summary += "; applying it would change nothing"
    out.print(summary)


def _render_product(change: ProductChange) -> None:
    if change.created:
        out.print(f"[green]+ {show(change.product_id)}[/] (created)")
        return
    out.print(f"[yellow]~ {show(change.product_id)}[/]")
    for field in change.fields:
        for value in value_changes(field):
            out.print(f"    {show(value.path)}: {shown_value(value.old)} -> {shown_value(value.new)}")


def diff_payload(result: CatalogDiff, before: str, after: str, kind: str, batch: BatchFile | None) -> dict[str, Any]:
    """The --json document (docs/message-format.md, "Previews and diffs")."""
    outcome = "rejected" if result.rejected else "changes" if result.differs else "no_changes"
    products = [{"product_id": change.product_id, "change": "created" if change.created else "changed",
                 "fields": [field.model_dump(mode="json") for field in change.fields]} for change in result.products]
    products += [{"product_id": change.product_id, "change": "removed",
                  "fields": [field.model_dump(mode="json") for field in change.fields]} for change in result.removed]
    errors = []
    for error in result.errors:
        errors.append({**error.model_dump(mode="json"), "line": batch.line_of(error.index) if batch else None})
    return {"kind": kind, "before": before, "after": after, "outcome": outcome, "created": result.created,
            "changed": result.changed, "unchanged": result.unchanged, "removed": len(result.removed),
            "order_changed": result.order_changed, "products": products, "errors": errors}
