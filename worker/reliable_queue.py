"""Redis scripts that close kombu's gap between popping a message and recording it as unacknowledged.

Stock kombu 5.7 pops with BRPOP and records the message afterwards (``QoS.append``: ZADD
``unacked_index`` + HSET ``unacked``), from Python, in a second round trip. Redis or the worker
killed between the two lost the message: the pop is persisted, the record never happens.

The ``catalog-redis`` channel (worker/broker_transport.py) instead pops with
``BRPOPLPUSH <queue> <queue>:claimed`` (one atomic, persisted command), then runs
:data:`RECORD_CLAIMED`: ZADD + HSET of the unacked record and LREM of the exact popped bytes from the
claim list, in one script (scripts are atomic, and written to the AOF as one MULTI/EXEC). At every
moment the message is in the queue, in the claim list, or in the unacked record.

:data:`SWEEP_CLAIMS` puts back what a dead pop left in the claim list, in two passes using Redis
TIME (one clock for every worker): an entry first seen is remembered in ``<queue>:claimed:seen``
(field: SHA-1 of its bytes, value: when first seen); one still there ``grace`` seconds later goes
back to the consumption end of the queue (RPUSH: it is popped next) and is forgotten. A healthy
claim lives for milliseconds; the grace (10 s by default) is far above that. A worker paused
between its pop and its record for longer than the grace gets its message delivered twice: once by
itself, once to whoever pops it after the sweep. That is accepted: the workers' exactly-once
ledger answers the second delivery as a duplicate (docs/commit-protocol.md, "Redis durability").
"""

from __future__ import annotations

from typing import Any

import redis

CLAIM_GRACE = 10.0  # seconds an unrecorded claim waits before the sweep puts it back
SWEEP_LIMIT = 1000  # claim entries one sweep looks at (the oldest); a healthy list holds a few

# KEYS: claim list, seen hash, unacked index, unacked hash.
# ARGV: popped bytes, delivery tag, index score (client time, as kombu's), unacked payload.
RECORD_CLAIMED = """
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[4])
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HDEL', KEYS[2], redis.sha1hex(ARGV[1]))
return 1
"""

# KEYS: claim list, seen hash, queue. ARGV: grace seconds, how many of the oldest entries to look at.
# Returns how many entries went back to the queue.
SWEEP_CLAIMS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local grace = tonumber(ARGV[1])
local present, moved = {}, 0
for _, item in ipairs(redis.call('LRANGE', KEYS[1], -tonumber(ARGV[2]), -1)) do
  local digest = redis.sha1hex(item)
  if not present[digest] then
    present[digest] = true
    local first = redis.call('HGET', KEYS[2], digest)
    if not first then
      redis.call('HSET', KEYS[2], digest, tostring(now))
    elseif now - tonumber(first) >= grace then
      redis.call('LREM', KEYS[1], 1, item)
      redis.call('RPUSH', KEYS[3], item)
      redis.call('HDEL', KEYS[2], digest)
      moved = moved + 1
    end
  end
end
for _, digest in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not present[digest] then
    redis.call('HDEL', KEYS[2], digest)
  end
end
return moved
"""


def claim_key(queue_key: str) -> str:
    """The list a pop from ``queue_key`` parks its message in until it is recorded."""
    return f"{queue_key}:claimed"


def seen_key(queue_key: str) -> str:
    """The sweep's memory of ``claim_key(queue_key)``: digest of an entry -> when first seen."""
    return f"{claim_key(queue_key)}:seen"


def record_claimed(client: redis.Redis, queue_key: str, popped: bytes, delivery_tag: str,
                   score: float, unacked_payload: str, unacked_index_key: str, unacked_key: str) -> None:
    """Record a claimed message as unacknowledged and take it off the claim, atomically."""
    script: Any = client.register_script(RECORD_CLAIMED)
    script(keys=[claim_key(queue_key), seen_key(queue_key), unacked_index_key, unacked_key],
           args=[popped, delivery_tag, score, unacked_payload])


def sweep_claims(client: redis.Redis, queue_key: str, grace: float, limit: int = SWEEP_LIMIT) -> int:
    """One pass of the two-pass rule over ``queue_key``'s claim list; how many went back to the queue."""
    script: Any = client.register_script(SWEEP_CLAIMS)
    return int(script(keys=[claim_key(queue_key), seen_key(queue_key), queue_key], args=[grace, limit]))
