"""Counters in Redis: batch sequence numbers (submission order) and lock fencing tokens."""

from __future__ import annotations

import redis

from catalog_core.errors import RedisUnavailableError

# INCR, but never at or below ``floor``: after Redis lost data (a restore, an AOF cut short),
# the counter restarts from what the catalog's state file proves was already handed out.
_INCR_ABOVE = """
local value = redis.call('incr', KEYS[1])
local floor = tonumber(ARGV[1])
if value <= floor then
    value = floor + 1
    redis.call('set', KEYS[1], value)
end
return value
"""


def sequence_key(queue: str) -> str:
    return f"{queue}:sequence"


def fence_key(lock_name: str) -> str:
    return f"{lock_name}:fence"


def incr_above(client: redis.Redis, key: str, floor: int = 0) -> int:
    try:
        return int(client.eval(_INCR_ABOVE, 1, key, floor))
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot take the next number of {key}: {exc}") from None


def next_sequence(client: redis.Redis, queue: str, floor: int = 0) -> int:
    """The next batch sequence number: the order in which batches were submitted."""
    return incr_above(client, sequence_key(queue), floor)


def abandoned_key(queue: str) -> str:
    return f"{queue}:sequence:abandoned"


def abandon_sequence(client: redis.Redis, queue: str, sequence: int) -> None:
    """Say that ``sequence`` will never have an outcome (its batch was never queued, or failed for
    good). Best effort: if Redis is down, the gap closes when it falls out of the open window."""
    try:
        client.sadd(abandoned_key(queue), sequence)
    except redis.RedisError:
        pass


def abandoned_sequences(client: redis.Redis, queue: str) -> list[int]:
    return sorted(int(value) for value in client.smembers(abandoned_key(queue)))


def forget_abandoned(client: redis.Redis, queue: str, sequences: list[int]) -> None:
    if sequences:
        client.srem(abandoned_key(queue), *sequences)
