"""The change stream's outbox: events travel in the commit record and are published after it.

Steps (docs/commit-protocol.md, "The change stream"):
1. a commit writes its batches' events into its journal entry: they are durable with it;
2. after the commit point the writer publishes them (one Redis transaction), best effort;
3. the next write, under the lock, compares the stream's newest fencing token with the events
   still in the journal: those above it were never published (a crash or a Redis error after
   step 1) and are published now; then every journal entry drops its events. Events this
   process saw Redis accept at step 2 need no look (the usual case: the last commit was ours).
So an event is never lost (it stays in the record until a writer saw Redis take it) and
never invented (only committed batches have one); after a crash between 1 and 2 a consumer
may see it twice, with the same ``event_id``.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from catalog_core.events import EncodedEvent, last_published_fence, publish
from worker.state import CatalogState

log = logging.getLogger(__name__)


def publish_pending(client: redis.Redis, queue: str, maxlen: int, state: CatalogState, accepted_through: int = 0
                    ) -> int:
    """Step 3, on a draft: publish the journal's events the stream lacks, then drop them all from the
    journal. Returns how many were published. A Redis error is raised: the write is retried.

    ``accepted_through``: the fence of this process's last commit whose events Redis accepted
    (``publish_committed``); events at or below it are not looked for in the stream. Fences
    only grow, and step 3 of that commit left no older event in the journal."""
    held = [event for entry in state.journal for event in entry.get("events", ())]
    if not held:
        return 0
    pending = [encoded for event in held if (encoded := _encoded(event)) is not None]
    unconfirmed = [event for event in pending if event.fence > accepted_through]
    missing: list[EncodedEvent] = []
    if maxlen > 0 and unconfirmed:
        newest = last_published_fence(client, queue)
        missing = [event for event in unconfirmed if event.fence > newest]
        if missing:
            publish(client, queue, missing, maxlen)
            log.warning("published %d change event(s) that a crash or a Redis failure had held back", len(missing))
    # Entries without events stay the same objects: their serialized bytes are kept (worker/state_journal.py).
    state.journal = [{k: v for k, v in entry.items() if k != "events"} if "events" in entry else entry
                     for entry in state.journal]
    state.journal = [entry for entry in state.journal if entry["ledger"] or entry["versions"]]
    return len(missing)


def _encoded(event: EncodedEvent | dict[str, Any]) -> EncodedEvent | None:
    """An event as this process committed it, or as read from the state file: there, anyone could
    have written it; one that is not JSON any more (an integer beyond 64 bits) is dropped, not
    allowed to fail every write."""
    if isinstance(event, EncodedEvent):
        return event
    try:
        return EncodedEvent(event)
    except TypeError as exc:  # orjson.JSONEncodeError
        log.warning("dropped change event %s of the state file's journal: it cannot be written as JSON (%s)",
                    str(event.get("event_id"))[:64], exc)
        return None


def publish_committed(client: redis.Redis, queue: str, maxlen: int, state: CatalogState) -> bool:
    """Step 2: the events of a commit that is durable; True once Redis accepted them all (or there
    were none to publish). A failure is only logged: step 3 makes up for it."""
    if not state.events or maxlen <= 0:
        return True
    try:
        publish(client, queue, state.events, maxlen)
    except redis.RedisError as exc:
        log.warning("committed; %d change event(s) not yet published (%s): the next write publishes them",
                    len(state.events), exc)
        return False
    return True
