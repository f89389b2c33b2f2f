"""The change stream in Redis: publishing events (workers) and reading them (watch, history, revert).

A capped Redis Stream, ``<queue>:events``, holds one entry per applied batch: the fields
``event_id``, ``fence``, ``batch_id`` and ``data`` (the ``ChangeEvent`` as JSON). It keeps about
``CATALOG_EVENTS_MAXLEN`` entries (``XADD MAXLEN ~``): that is how far back ``catalog history``
and ``catalog revert`` reach.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import orjson
import redis
from pydantic import ValidationError

from schemas.events import ChangeEvent

READ_PAGE = 500
# A stream's entries as redis-py returns them to our clients, which never decode responses.
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def events_key(queue: str) -> str:
    return f"{queue}:events"


class EncodedEvent:
    """A change event (``ChangeEvent`` as JSON values) serialized once, when its batch is merged:
    the commit record carries these bytes, and the stream gets them as they are.

    Why: a group commit of 64 batches of 100 records holds tens of thousands of field changes
    (old and new values); as Python objects they, and the products they point into, were the
    largest part of the holder's memory until the commit, and they were serialized twice
    (commit record, stream). Only ``committed_at`` is still open when the batch is merged: the
    bytes are kept in two parts around it, so the JSON is byte for byte ``orjson.dumps(event)``.
    """

    __slots__ = ("event_id", "fence", "batch_id", "committed_at", "_head", "_tail")

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event_id: str = event["event_id"]
        self.fence: int = event["fence"]
        self.batch_id: str = event["batch_id"]
        self.committed_at: float = event.get("committed_at", 0.0)  # read back as it was written, whatever it is
        names = list(event)
        cut = names.index("committed_at") if "committed_at" in event else len(names)
        head = orjson.dumps({name: event[name] for name in names[:cut]})
        self._head: bytes = head
        self._tail: bytes | None = None
        if cut == len(names):
            return
        tail = orjson.dumps({name: event[name] for name in names[cut + 1:]})
        # The JSON up to the value of committed_at, and from right after it: joined around it.
        self._head = (head[:-1] + b"," if len(head) > 2 else b"{") + b'"committed_at":'
        self._tail = b"," + tail[1:] if len(tail) > 2 else b"}"

    @property
    def data(self) -> bytes:
        """The event's JSON, ``committed_at`` included, where the event has it."""
        return b"".join(self.parts())

    def parts(self) -> tuple[bytes, ...]:
        """``data`` as the buffers it joins."""
        if self._tail is None:
            return (self._head,)
        return self._head, orjson.dumps(self.committed_at), self._tail


def encoded_array(events: Sequence[EncodedEvent]) -> bytes:
    """``events`` as one JSON array, ``[e1,e2,...]``, joined in one copy: a group commit's events
    are megabytes (10 MB for 100 100-record batches), and joining each event, then the list, then
    the brackets held four copies of them at once (tracemalloc, one process)."""
    parts: list[bytes] = [b"["]
    for number, event in enumerate(events):
        if number:
            parts.append(b",")
        parts.extend(event.parts())
    parts.append(b"]")
    return b"".join(parts)


def publish(client: redis.Redis, queue: str, events: Sequence[EncodedEvent], maxlen: int) -> None:
    """Add ``events`` (in commit order) in one transaction: all or none of them."""
    if not events:
        return
    with client.pipeline(transaction=True) as pipe:
        for event in events:
            pipe.xadd(events_key(queue), {"event_id": event.event_id, "fence": event.fence,
                                          "batch_id": event.batch_id, "data": event.data},
                      maxlen=maxlen, approximate=True)
        pipe.execute()


def last_published_fence(client: redis.Redis, queue: str) -> int:
    """The fencing token of the newest event in the stream; 0 when it is empty (or gone with Redis's data)."""
    newest = cast(StreamEntries, client.xrevrange(events_key(queue), count=1))
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
        page = cast(StreamEntries, client.xrange(events_key(queue), min=start, count=READ_PAGE))
        for entry_id, fields in page:
            yield entry_id.decode(), parse_entry(fields)
        if len(page) < READ_PAGE:
            return
        start = f"({page[-1][0].decode()}"


def follow(client: redis.Redis, queue: str, since: str, block_ms: int) -> list[tuple[str, ChangeEvent | None]]:
    """Entries after ``since`` (``$``: only new ones), waiting up to ``block_ms`` for the first."""
    answer = cast(list[tuple[bytes, StreamEntries]],
                  client.xread({events_key(queue): since}, count=READ_PAGE, block=block_ms))
    if not answer:
        return []
    return [(entry_id.decode(), parse_entry(fields)) for entry_id, fields in answer[0][1]]
