"""`catalog watch`, `catalog history` and `catalog revert`: the change stream, for people and scripts."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import orjson
import redis
import typer

from catalog_core.errors import EXIT_OK, BatchNotFoundError, RedisUnavailableError
from catalog_core.events import follow, read_events
from catalog_core.redis_client import connect, display_url
from catalog_core.settings import Settings
from catalog_cli.options import CatalogOption, JsonOption, RedisUrlOption, settings_from
from catalog_cli.output import out, print_json_line, print_result, result_exit_code, show
from schemas.events import ChangeEvent, FieldChange
from worker.revert import RevertPlan, plan_revert, revert_batch_id
from worker.state import CatalogState, read_state, state_path
from worker.store import CatalogStore
from worker.write_attempt import Planned

VALUE_SHOWN = 60


def _value(change: FieldChange, which: str) -> str:
    if getattr(change, f"{which}_absent"):
        return "(absent)"
    text = orjson.dumps(getattr(change, which)).decode()
    return show(text if len(text) <= VALUE_SHOWN else text[: VALUE_SHOWN - 1] + "…")


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _redis_call(settings: Settings, call: Callable[[redis.Redis], Any]) -> Any:
    try:
        return call(connect(settings.redis_url))
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"Redis at {display_url(settings.redis_url)} failed: {type(exc).__name__}") from None


def _print_event(stream_id: str, event: ChangeEvent | None, as_json: bool) -> None:
    if event is None:
        if not as_json:
            out.print(f"{stream_id}: not a catalog-ingest event (ignored)")
        return
    if as_json:
        print_json_line({"stream_id": stream_id, **event.model_dump(mode="json")})
        return
    out.print(f"{_when(event.committed_at)}  batch {show(event.batch_id)} from {show(event.source)} "
              f"(sequence {event.sequence}, event {event.event_id}): {len(event.changes)} product(s)")
    for change in event.changes:
        if change.created:
            out.print(f"  + {show(change.product_id)} created")
            continue
        out.print(f"  ~ {show(change.product_id)}")
        for field in change.fields:
            out.print(f"      {show(field.field)}: {_value(field, 'old')} -> {_value(field, 'new')}")


def watch(
    since: Annotated[str, typer.Option("--since", help="Start after this stream id; `0` replays everything the "
                                       "stream still holds. Default: only new events.")] = "$",
    count: Annotated[int, typer.Option("--count", min=0, help="Stop after this many events (0: no limit).")] = 0,
    timeout: Annotated[float, typer.Option("--timeout", min=0, help="Stop after this many seconds without a "
                                           "new event (0: wait for ever, until Ctrl-C).")] = 0,
    catalog: CatalogOption = None, redis_url: RedisUrlOption = None, as_json: JsonOption = False,
) -> None:
    """Follow the change stream: one event per applied batch, with each product's fields old -> new.

    Example: `catalog watch --since 0 --json` prints every event the stream holds, one JSON object
    per line with its `stream_id`; pass the last one to `--since` to go on from there. An event
    can come twice after a worker crash, with the same `event_id`: drop repeats by it.
    """
    settings = settings_from(catalog, redis_url, check_timing=False)
    seen, position, idle_since = 0, since, time.monotonic()
    while True:
        entries = _redis_call(settings, lambda client: follow(client, settings.queue, position, 1000))
        for stream_id, event in entries:
            _print_event(stream_id, event, as_json)
            position, seen = stream_id, seen + 1
            if count and seen >= count:
                return
        if entries:
            idle_since = time.monotonic()
        elif timeout and time.monotonic() - idle_since >= timeout:
            return


def _events(settings: Settings) -> Iterable[tuple[str, ChangeEvent | None]]:
    return _redis_call(settings, lambda client: list(read_events(client, settings.queue)))


def history(
    product_id: Annotated[str, typer.Argument(help="The product whose changes to list.")],
    field: Annotated[str | None, typer.Option("--field", "-f", help="Only this field.")] = None,
    catalog: CatalogOption = None, redis_url: RedisUrlOption = None, as_json: JsonOption = False,
) -> None:
    """List the batches that changed a product: when, source, batch id, and each field old -> new.

    It reaches as far back as the change stream: about CATALOG_EVENTS_MAXLEN events (10,000 by
    default; the first line says from when). Example: `catalog history Dubai_MuseumOfTheFuture
    --field pricing`.
    """
    settings = settings_from(catalog, redis_url, check_timing=False)
    events = [event for _, event in _events(settings) if event is not None]
    found = 0
    if not as_json:
        reach = f"since {_when(events[0].committed_at)}" if events else "(the stream is empty)"
        out.print(f"history of {show(product_id)} in the change stream {reach}, "
                  f"kept for about {settings.events_maxlen:,} events (CATALOG_EVENTS_MAXLEN)")
    for event in events:
        for change in event.changes:
            if change.product_id != product_id:
                continue
            fields = [f for f in change.fields if field is None or f.field == field]
            if not fields:
                continue
            found += 1
            if as_json:
                print_json_line({"product_id": product_id, "batch_id": event.batch_id, "source": event.source,
                                 "sequence": event.sequence, "committed_at": event.committed_at,
                                 "created": change.created, "fields": [f.model_dump(mode="json") for f in fields]})
                continue
            what = "created" if change.created else "changed"
            out.print(f"{_when(event.committed_at)}  {what} by batch {show(event.batch_id)} from {show(event.source)}")
            for item in fields:
                out.print(f"      {show(item.field)}: {_value(item, 'old')} -> {_value(item, 'new')}")
    if not as_json and not found:
        out.print("no change of it in the stream")


def _find_event(settings: Settings, batch_id: str) -> ChangeEvent:
    matches = [event for _, event in _events(settings) if event is not None and event.batch_id == batch_id]
    if not matches:
        raise BatchNotFoundError(
            f"batch {batch_id!r} is not in the change stream: it did not change the catalog (see `catalog status "
            f"{batch_id}`), or it is older than the stream's last {settings.events_maxlen:,} events "
            "(CATALOG_EVENTS_MAXLEN); restore a backup instead (`catalog backups list`)")
    return matches[-1]


def _print_plan(plan: RevertPlan) -> None:
    for product_id in plan.deleted:
        out.print(f"  {show(product_id)}: created by the batch: removed")
    for record in plan.records:
        product_id = record["product_id"]
        if product_id in plan.deactivated:
            out.print(f"  {show(product_id)}: created by the batch: set active false")
        elif product_id in plan.recreated:
            out.print(f"  {show(product_id)}: removed by the batch: put back")
        else:
            restored = ", ".join(show(name) for name in record if name != "product_id")
            out.print(f"  {show(product_id)}: restore {restored}")
    for kept in plan.kept:
        by = f"batch {show(kept.by_batch)}" if kept.by_batch else f"sequence {kept.by_sequence}"
        out.print(f"  {show(kept.product_id)}.{show(kept.field)}: kept, written since by {by}")


def revert(
    batch_id: Annotated[str, typer.Argument(help="The applied batch to undo.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    delete_created: Annotated[bool, typer.Option(
        "--delete-created", help="Remove the products the batch created instead of setting them inactive "
        "(not those a later batch wrote to: they are set inactive, and listed).")] = False,
    catalog: CatalogOption = None, redis_url: RedisUrlOption = None, as_json: JsonOption = False,
) -> None:
    """Undo one applied batch: each field it wrote goes back to its value from before, unless a
    later batch wrote it since (listed, left alone); products it created are set `active: false`
    (or removed, with --delete-created).

    The revert is itself a batch, `revert-of-BATCH_ID` (its own sequence, backup, event and ledger
    entry), so it can be reverted too, and running it twice answers `duplicate`. Example:
    `catalog revert feed-2026-11-29 --dry-run`. Exit codes as `apply`.
    """
    settings = settings_from(catalog, redis_url)
    event = _find_event(settings, batch_id)
    if dry_run:
        state = read_state(state_path(settings.catalog_path)) or CatalogState()
        plan = plan_revert(event, state.versions, state.ledger, delete_created)
        if as_json:
            print_json_line({"revert_id": plan.revert_id, "records": plan.records, "deleted": plan.deleted,
                             "kept": [vars(k) for k in plan.kept], "deactivated": plan.deactivated})
        else:
            removal = f" and remove {len(plan.deleted)} product(s)" if plan.deleted else ""
            out.print(f"reverting batch {show(batch_id)} would apply {len(plan.records)} record(s){removal} as "
                      f"{show(plan.revert_id)}:")
            _print_plan(plan)
        raise SystemExit(EXIT_OK)
    planned: list[RevertPlan] = []

    def planner(state: CatalogState) -> Planned:
        planned[:] = [plan_revert(event, state.versions, state.ledger, delete_created)]
        return Planned(planned[0].records, planned[0].deleted)

    result = CatalogStore(settings).apply_planned(planner, revert_batch_id(batch_id), f"revert:{batch_id}")
    if as_json:
        print_json_line(result.model_dump(mode="json"))
    else:
        print_result(result, None)
        if planned:
            _print_plan(planned[0])
    raise SystemExit(result_exit_code(result) if result.status.value != "unchanged" else EXIT_OK)

