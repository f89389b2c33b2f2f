"""Commands that go through the queue: enqueue, status, rejected."""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import ExitStack
from typing import TYPE_CHECKING
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn

from catalog_core.errors import (
    EXIT_CANNOT_WRITE, EXIT_OK, EXIT_PENDING, EXIT_REJECTED, EXIT_UNKNOWN, BatchRefusedError, CatalogError,
    FilesUnreadableError,
)
from catalog_core.settings import Settings
from catalog_core.rejections import find_rejection, list_rejections
from catalog_core.redis_client import connect
from catalog_cli.options import JsonOption, RedisUrlOption, settings_from
from catalog_cli.output import (
    describe_error, err, out, print_json_line, print_result, result_exit_code, result_payload, show,
)
from catalog_cli.store_commands import FilesArgument, read_all
from producers.chunks import ChunkLimits, chunked_file, numbered
from producers.state import BatchState
from producers.files import BatchFile
from schemas import BatchResult, BatchStatus

if TYPE_CHECKING:
    from producers.api import BatchHandle

STATE_EXIT = {"queued": EXIT_PENDING, "running": EXIT_PENDING, "retrying": EXIT_PENDING,
              "failed": EXIT_CANNOT_WRITE, "lost": EXIT_CANNOT_WRITE, "unknown": EXIT_UNKNOWN}


# Several batches exit with the worst: failed or lost, then rejected, unknown, pending, done.
EXIT_SEVERITY = {EXIT_OK: 0, EXIT_PENDING: 1, EXIT_UNKNOWN: 2, EXIT_REJECTED: 3, EXIT_CANNOT_WRITE: 4}


def _exit_for(states: list[BatchState]) -> int:
    codes = [EXIT_OK]
    for state in states:
        if state.result is not None:
            codes.append(result_exit_code(state.result))
        else:
            codes.append(STATE_EXIT.get(state.state, EXIT_PENDING))
    return max(codes, key=EXIT_SEVERITY.__getitem__)


def _batches_of(files: list[Path], settings: Settings, chunk_size: int | None,
                open_files: ExitStack) -> list[tuple[str, int, Iterable[BatchFile]]]:
    """Each file as (name, number of batches, batches). Every file is read and decoded in full first,
    so a broken file anywhere means exit 2 with nothing queued; chunked files are then read again."""
    if not chunk_size:
        return [(batch.source, 1, [batch]) for batch in read_all(files, settings.max_batch_bytes,
                                                                 settings.max_batch_items)]
    limits = ChunkLimits.of(settings, chunk_size)
    planned: list[tuple[str, int, Iterable[BatchFile]]] = []
    problems = []
    for file in files:
        try:
            chunks = open_files.enter_context(chunked_file(file, limits))
            planned.append((chunks.source, chunks.count(), chunks))
        except CatalogError as exc:
            problems.append(str(exc))
    if problems:
        raise FilesUnreadableError(problems)
    return planned


def _show_state(state: BatchState, batch: BatchFile | None, as_json: bool) -> None:
    if as_json:
        if state.result is not None:
            print_json_line(result_payload(state.result, batch))
        else:
            payload = {"batch_id": state.batch_id, "status": state.state, "reason": state.reason,
                       "since": state.since.isoformat() if state.since else None}
            if batch is not None:
                payload["source"] = batch.source
            print_json_line(payload)
    elif state.result is not None:
        print_result(state.result, batch)
    else:
        where = f"{show(batch.source)}: " if batch else ""
        reason = f": {show(state.reason)}" if state.reason else ""
        since = f" since {state.since:%Y-%m-%d %H:%M:%S} UTC" if state.since else ""
        colour = "red" if state.state in {"lost", "failed"} else "yellow"
        out.print(f"{where}batch {show(state.batch_id)} is [{colour}]{state.state}[/]{since}{reason}")


def _wait_all(handles: list[tuple[BatchHandle, BatchFile]], timeout: float, show_progress: bool) -> list[BatchState]:
    deadline = time.monotonic() + timeout
    states: dict[str, BatchState] = {}
    with Progress(TextColumn("waiting for batches"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=err, disable=not show_progress, transient=True) as progress:
        bar = progress.add_task("wait", total=len(handles))
        while True:
            for handle, _ in handles:
                if handle.batch_id not in states or not states[handle.batch_id].final:
                    states[handle.batch_id] = handle.state()
            done = sum(1 for s in states.values() if s.final)
            progress.update(bar, completed=done)
            if done == len(handles) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    return [states[h.batch_id] for h, _ in handles]


def enqueue(
    files: FilesArgument,
    redis_url: RedisUrlOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the results and show them.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits in all (exit 4 if not done).", min=0)] = 300,
    source: Annotated[str | None, typer.Option(help="Label for logs and results. Default: the file name.")] = None,
    batch_id: Annotated[str | None, typer.Option(help="Batch id (one file): resubmitting it is safe.")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Split each file into batches of up to N records (and "
                                                   "CATALOG_MAX_BATCH_BYTES); each chunk is then all or nothing "
                                                   "on its own. The file is streamed, up to CATALOG_MAX_FILE_BYTES.",
                                                   min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue batch files for the workers; each file is one all-or-nothing batch.

    Records are checked here first: a batch with records that can never be valid is refused
    and never queued. Exit 0 queued (or, with --wait, applied/unchanged), 1 rejected, 2 file
    unreadable or too large, 3 broker unreachable or batch failed, 4 still pending at --timeout.
    """
    if batch_id is not None and len(files) != 1:
        raise typer.BadParameter("--batch-id names one batch; give exactly one file", param_hint="--batch-id")
    from producers.api import Producer, new_batch_id  # noqa: PLC0415 - Celery is slow to import; only here

    settings = settings_from(None, redis_url)
    producer = Producer(settings)
    submitted: list[tuple[BatchHandle, BatchFile]] = []
    refused: list[BatchState] = []
    with ExitStack() as open_files:
        for name, count, parts in _batches_of(files, settings, chunk_size, open_files):
            if count > 1 and not as_json:
                err.print(f"{show(name)}: split into {count} batches of up to {chunk_size} records (and "
                          f"{settings.max_batch_bytes:,} bytes); each is applied or rejected on its own")
            for number, chunk_id, part in numbered(parts, name, count, batch_id, new_batch_id):
                label = source or Path(part.source).name + (f"#{number}" if count > 1 else "")
                try:
                    handle = producer.submit(part.records, batch_id=chunk_id, source=label)
                except BatchRefusedError as exc:
                    result = BatchResult(batch_id=chunk_id or "(not queued)", status=BatchStatus.REJECTED,
                                         errors=exc.errors)
                    state = BatchState(result.batch_id, "done", result=result)
                    refused.append(state)
                    _show_state(state, part, as_json)
                    if not as_json:
                        err.print("  refused by the producer's checks: the batch was not queued")
                    continue
                # Only the lines are kept for showing results: holding every chunk's records would
                # hold the whole file again.
                submitted.append((handle, BatchFile(part.source, [], part.lines)))
                if not wait:
                    if as_json:
                        print_json_line({"batch_id": handle.batch_id, "status": "queued", "source": part.source,
                                         "records": len(part.records)})
                    else:
                        out.print(f"{show(part.source)}: queued as batch [bold]{show(handle.batch_id)}[/] "
                                  f"({len(part.records)} records)")
    if not wait:
        raise typer.Exit(EXIT_REJECTED if refused else EXIT_OK)
    states = _wait_all(submitted, timeout, show_progress=not as_json and err.is_terminal)
    for state, (_, part) in zip(states, submitted, strict=True):
        _show_state(state, part, as_json)
    raise typer.Exit(_exit_for(states + refused))


def status(
    batch_id: Annotated[str, typer.Argument(help="The id `catalog enqueue` printed.")],
    redis_url: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show where a batch is: queued, running, retrying, applied, unchanged, rejected, duplicate, failed,
    lost or unknown.

    lost: queued, but Redis kept no trace of it (it lost its data): resubmit it with the same
    batch id, which is safe. unknown: never queued here, or its result expired (results are
    kept CATALOG_RESULT_EXPIRES seconds), and the catalog's ledger (read when this machine has
    CATALOG_PATH) does not know it either; a batch the ledger knows (`catalog apply`'s too) is
    shown as it recorded it, with the backup that holds the version from before it. Exit 0
    done, 1 rejected (or a duplicate whose records differ), 3 failed or lost, 4 still queued,
    running or retrying, 5 unknown.
    """
    from producers.api import Producer  # noqa: PLC0415 - Celery is slow to import; only here

    settings = settings_from(None, redis_url)
    state = Producer(settings).handle(batch_id).state()
    if state.result is None:
        rejection = find_rejection(connect(settings.redis_url), settings.queue, batch_id)
        if rejection is not None:
            state = BatchState(batch_id, "done", result=rejection.result)
    ledger_note = None
    if state.state == "unknown":
        recorded = _ledger_result(settings, batch_id)
        if recorded is not None:
            state = BatchState(batch_id, "done", result=recorded)
            ledger_note = (f"(from the ledger of {settings.catalog_path}: its result in Redis expired, or it was "
                           "applied with `catalog apply`)")
    _show_state(state, None, as_json)
    if ledger_note is not None and not as_json:
        err.print(ledger_note, style="dim")
    raise typer.Exit(_exit_for([state]))


def _ledger_result(settings: Settings, batch_id: str) -> BatchResult | None:
    """The batch's outcome as the catalog's ledger keeps it (CATALOG_LEDGER_DAYS, CATALOG_LEDGER_MAX_IDS),
    when this machine has the catalog; None otherwise, or when its state file cannot be read (the
    batch is then as unknown as Redis says)."""
    from worker.state import read_state, state_path  # noqa: PLC0415 - only when Redis knows nothing

    try:
        state = read_state(state_path(settings.catalog_path))
    except CatalogError as exc:
        err.print(f"(the catalog's ledger was not read: {show(str(exc))})", style="dim")
        return None
    return None if state is None else state.original(batch_id)


def rejected(
    redis_url: RedisUrlOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.", min=1)] = 50,
    as_json: JsonOption = False,
) -> None:
    """List batches the workers rejected, newest first, with every reason."""
    settings = settings_from(None, redis_url, check_timing=False)
    rejections = list_rejections(connect(settings.redis_url), settings.queue, limit)
    for item in rejections:
        if as_json:
            print_json_line(item.model_dump(mode="json"))
            continue
        out.print(f"[red]{show(item.batch_id)}[/] from {show(item.source)}, "
                  f"rejected {item.rejected_at:%Y-%m-%d %H:%M:%S} UTC")
        for error in item.result.errors:
            out.print(f"  - {show(describe_error(error, None))}")
    if not rejections and not as_json:
        out.print("no rejected batches")

