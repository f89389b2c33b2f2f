"""The chaos run's check of the change stream: never lost, never invented, and it replays to the catalog.

The stream may have lost its start with a Redis wiped empty, so the replay starts from the
backup the oldest remaining event names (the catalog from before that event's commit) and
applies every event from there on, in stream order, then those still waiting in the state's
outbox, each ``event_id`` once. What it says is modelled here apart from the worker: each new
value is set, each field gone is dropped.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from schemas.events import ChangeEvent
from worker.catalog_file import parse_catalog
from worker.state import CatalogState

Products = dict[str, dict[str, Any]]


def replay(start: list[dict[str, Any]], events: list[ChangeEvent]) -> Products:
    products = {p["product_id"]: copy.deepcopy(p) for p in start}
    for event in events:
        for change in event.changes:
            if change.deleted:
                products.pop(change.product_id, None)
                continue
            product = products.setdefault(change.product_id, {})
            for field in change.fields:
                if field.new_absent:
                    product.pop(field.field, None)
                else:
                    product[field.field] = field.new
    return products


def check_events(stream: list[ChangeEvent], state: CatalogState, catalog: list[dict[str, Any]],
                 backup_dir: Path, read_backup: Any) -> list[str]:
    """Problems with the change stream; ``read_backup(path) -> bytes`` reads a backup (maybe gzipped)."""
    outbox = [ChangeEvent.model_validate(event) for entry in state.journal for event in entry.get("events", ())]
    seen: set[str] = set()
    events = []
    for event in [*stream, *outbox]:
        if event.event_id not in seen:
            seen.add(event.event_id)
            events.append(event)
    applied = {batch_id: entry for batch_id, entry in state.ledger.items() if entry["status"] == "applied"}
    problems = [f"event {e.event_id} for batch {e.batch_id}, which the ledger has not as applied (sequence "
                f"{e.sequence}): invented" for e in events
                if e.batch_id not in applied or applied[e.batch_id]["sequence"] != e.sequence]
    if not events:
        return problems + ([f"{len(applied)} applied batches and no event"] if applied else [])
    first = events[0]
    with_event = {e.batch_id for e in events}
    lost = sorted(batch_id for batch_id, entry in applied.items()
                  if (entry.get("fence") or 0) >= first.fence and batch_id not in with_event)
    problems += [f"batch {batch_id} was applied after the oldest event but has no event: lost" for batch_id in lost]
    if first.backup is None:
        return problems + [f"the oldest event ({first.event_id}) names no backup to replay from"]
    start = parse_catalog(read_backup(backup_dir / first.backup), first.backup)
    replayed = replay(start, events)
    actual = {p["product_id"]: p for p in catalog}
    for product_id in sorted(replayed.keys() | actual.keys()):
        if replayed.get(product_id) != actual.get(product_id):
            problems.append(f"{product_id}: the events replay to {replayed.get(product_id)}, the catalog has "
                            f"{actual.get(product_id)}")
    return problems
