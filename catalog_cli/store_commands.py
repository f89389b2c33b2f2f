"""Commands that work on the catalog file directly: validate, apply, verify, stats."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from catalog_core.errors import EXIT_OK, EXIT_REJECTED, BatchTooLargeError, CatalogError, FilesUnreadableError
from catalog_core.logs import batch_context
from catalog_cli.options import CatalogOption, JsonOption, RedisUrlOption, settings_from
from catalog_cli.output import (describe_error, err, exit_code_for, out, print_json_line, print_result, result_payload,
                                show)
from producers.files import BatchFile, read_batch_file
from schemas import BatchResult, BatchStatus
from worker.catalog_file import read_catalog
from worker.inspect import CatalogStats, catalog_stats, verify_catalog
from worker.merge import merge_batch
from worker import metrics
from worker.store import CatalogStore

FilesArgument = Annotated[
    list[Path],
    typer.Argument(help="Batch files: a JSON array, one JSON object, or JSON Lines (.jsonl). '-' reads stdin.",
                   show_default=False),
]


def read_all(files: list[Path], max_bytes: int, max_items: int) -> list[BatchFile]:
    """Parse every file before touching anything, so a typo in file 3 does not leave files 1-2 half-done."""
    batches, problems = [], []
    for file in files:
        try:
            batch = read_batch_file(file, max_bytes)
            BatchTooLargeError.check_items(len(batch.records), max_items, what=str(file))
            batches.append(batch)
        except CatalogError as exc:
            problems.append(str(exc))
    if problems:
        raise FilesUnreadableError(problems)
    return batches


def validate(files: FilesArgument, catalog: CatalogOption = None, as_json: JsonOption = False) -> None:
    """Check batch files against the current catalog, without writing and without Redis.

    Each file is checked on its own as one batch: patches need their product in the catalog.
    Exit 0 when all are valid, 1 when any record is invalid, 2 when a file cannot be read.
    """
    settings = settings_from(catalog, None, check_timing=False)
    batches = read_all(files, settings.max_batch_bytes, settings.max_batch_items)
    current = read_catalog(settings.catalog_path)
    results = []
    for batch in batches:
        outcome = merge_batch(current, batch.records)
        status = BatchStatus.REJECTED if outcome.errors else BatchStatus.APPLIED
        result = BatchResult(batch_id="(validate)", status=status, created=outcome.created,
                             updated=outcome.updated, unchanged=outcome.unchanged, errors=outcome.errors)
        results.append(result)
        if as_json:
            payload = result_payload(result, batch)
            payload["status"] = "invalid" if outcome.errors else "valid"
            print_json_line(payload)
        elif outcome.errors:
            out.print(f"{show(batch.source)}: [red]invalid[/], {len(outcome.errors)} problem(s)")
            for error in outcome.errors:
                out.print(f"  - {escape(describe_error(error, batch))}")
        else:
            out.print(f"{show(batch.source)}: [green]valid[/]; would create {outcome.created}, update "
                      f"{outcome.updated}, leave {outcome.unchanged} unchanged")
    raise typer.Exit(exit_code_for(results))


def apply(
    files: FilesArgument,
    catalog: CatalogOption = None,
    redis_url: RedisUrlOption = None,
    batch_id: Annotated[str | None, typer.Option(help="Batch id (one file only). Default: a new unique id.")] = None,
    as_json: JsonOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what each file would change, field by "
                                          "field (as `catalog diff FILE`); write nothing, need no Redis.")] = False,
) -> None:
    """Apply batch files to the catalog now, in this process, under the same lock the workers use.

    Each file is one all-or-nothing batch. Exit 0 applied or unchanged, 1 rejected (nothing
    written), 2 file missing or unparseable, 3 cannot write safely (Redis, lock, corrupt catalog).

    With `--dry-run`, nothing is written and no lock or sequence number is taken: each file is
    merged in memory against the current catalog (and the files before it) and its changes are
    shown; exit 0 if all would apply, 1 if one would be rejected. Example:

        catalog apply --dry-run feed.jsonl
    """
    if dry_run:
        if batch_id is not None:
            raise typer.BadParameter("--dry-run previews records and does not look up batch ids (`catalog status "
                                     "ID` does); leave out --batch-id", param_hint="--batch-id")
        from catalog_cli.diff_command import preview_files  # here: diff_command reads files with read_all above
        raise typer.Exit(preview_files(files, settings_from(catalog, None, check_timing=False), as_json))
    if batch_id is not None and len(files) != 1:
        raise typer.BadParameter("--batch-id names one batch; give exactly one file", param_hint="--batch-id")
    settings = settings_from(catalog, redis_url)
    batches = read_all(files, settings.max_batch_bytes, settings.max_batch_items)
    store = CatalogStore(settings)
    results = []
    for batch in batches:
        this_id = batch_id or f"apply-{uuid.uuid4().hex}"
        with batch_context(batch_id=this_id, source=batch.source):  # on its log lines (CATALOG_LOG_FORMAT=json)
            result = store.apply(batch.records, this_id, source=batch.source)
        metrics.record_batch(store.redis, settings.queue, result)  # counted like a worker's batch
        results.append(result)
        if as_json:
            print_json_line(result_payload(result, batch))
        else:
            print_result(result, batch)
    raise typer.Exit(exit_code_for(results))


def verify(catalog: CatalogOption = None) -> None:
    """Check that the catalog parses and every product validates. Exit 0 if so, 1 with the problems."""
    settings = settings_from(catalog, None, check_timing=False)
    count, problems = verify_catalog(settings.catalog_path)
    if problems:
        err.print(f"{show(settings.catalog_path)}: [red]{len(problems)} problem(s)[/]")
        for problem in problems:
            err.print(f"  - {escape(describe_error(problem, None))}")
        raise typer.Exit(EXIT_REJECTED)
    out.print(f"{show(settings.catalog_path)}: [green]ok[/], {count} valid products")
    raise typer.Exit(EXIT_OK)


def stats(catalog: CatalogOption = None, as_json: JsonOption = False) -> None:
    """Show products (active and inactive), categories, cities, file size, last change and backups."""
    settings = settings_from(catalog, None, check_timing=False)
    figures = catalog_stats(settings.catalog_path, settings.backup_path)
    if as_json:
        print_json_line(figures.as_dict())
        return
    print_stats(figures)


def print_stats(figures: CatalogStats) -> None:
    out.print(f"[bold]{show(figures.path)}[/]")
    out.print(f"  products: {figures.products} ({figures.active} active, {figures.inactive} inactive)")
    out.print(f"  by category: {', '.join(f'{show(k)} {v}' for k, v in figures.by_category.items()) or '-'}")
    out.print(f"  by city: {', '.join(f'{show(k)} {v}' for k, v in figures.by_city.items()) or '-'}")
    out.print(f"  size: {figures.size_bytes:,} bytes, last change {figures.last_change}")
    out.print(f"  backups: {figures.backups}" + (f", newest {show(figures.newest_backup)}" if figures.newest_backup else ""))
