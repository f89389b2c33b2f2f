"""The change stream in Redis: publishing events (workers) and reading them (watch, history, revert).

A capped Redis Stream, ``<queue>:events``, holds one entry per applied batch: the fields
``event_id``, ``fence``, ``batch_id`` and ``data`` (the ``ChangeEvent`` as JSON). It keeps about
``CATALOG_EVENTS_MAXLEN`` entries (``XADD MAXLEN ~``): that is how far back ``catalog history``
and ``catalog revert`` reach.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import redis
from pydantic import ValidationError

from schemas.events import ChangeEvent

READ_PAGE = 500


def events_key(queue: str) -> str:
    return f"{queue}:events"


def publish(client: redis.Redis, queue: str, events: Sequence[dict[str, Any]], maxlen: int) -> None:
    """Add ``events`` (ChangeEvent dicts, in commit order) in one transaction: all or none of them."""
    if not events:
        return
    with client.pipeline(transaction=True) as pipe:
        for event in events:
            pipe.xadd(events_key(queue), {"event_id": event["event_id"], "fence": event["fence"],
                                          "batch_id": event["batch_id"], "data": orjson.dumps(event)},
                      maxlen=maxlen, approximate=True)
        pipe.execute()


def last_published_fence(client: redis.Redis, queue: str) -> int:
    """The fencing token of the newest event in the stream; 0 when it is empty (or gone with Redis's data)."""
    newest = client.xrevrange(events_key(queue), count=1)
    if not newest:
        return 0
    try:
        return int(newest[0][1][b"fence"])
    except (KeyError, ValueError):
        return 0  # an entry someone else wrote: not ours to trust


def parse_entry(fields: dict[bytes, bytes]) -> ChangeEvent | None:
    """An entry's event; None for an entry that is not a valid event (anyone with Redis access can XADD)."""
    try:
        return ChangeEvent.model_validate_json(fields[b"data"])
    except (KeyError, ValidationError):
        return None


def read_events(client: redis.Redis, queue: str, since: str = "-") -> Iterator[tuple[str, ChangeEvent | None]]:
    """Every entry after stream id ``since`` (exclusive; ``-``: from the oldest), oldest first, page by page."""
    start = since if since == "-" else f"({since}"
    while True:
        page = client.xrange(events_key(queue), min=start, count=READ_PAGE)
        for entry_id, fields in page:
            yield entry_id.decode(), parse_entry(fields)
        if len(page) < READ_PAGE:
            return
        start = f"({page[-1][0].decode()}"


def follow(client: redis.Redis, queue: str, since: str, block_ms: int) -> list[tuple[str, ChangeEvent | None]]:
    """Entries after ``since`` (``$``: only new ones), waiting up to ``block_ms`` for the first."""
    answer = client.xread({events_key(queue): since}, count=READ_PAGE, block=block_ms)
    if not answer:
        return []
    return [(entry_id.decode(), parse_entry(fields)) for entry_id, fields in answer[0][1]]
