"""Counters in Redis: batch sequence numbers (submission order) and lock fencing tokens.

Sequences must never go backwards, not even when Redis loses its data (a restart without
persistence, a failover to an empty replica): a batch submitted after another must never be
superseded by it. So the counter does not restart at 1. When its key is missing, the first
number of the new *epoch* is Redis' clock in whole seconds times 2**EPOCH_BITS, which is above
every number handed out before, as long as fewer than 2**20 (about a million) sequences were
taken per second of the previous epoch's life. Within an epoch sequences are dense (INCR), so
gaps mean a batch that has no outcome yet. Everything stays below 2**53, so JSON keeps it exact
in every language (until about the year 2240).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from catalog_core.errors import RedisUnavailableError

EPOCH_BITS = 20
MAX_SEQUENCE = 2**53 - 1

# INCR, but never at or below ``floor``: after Redis lost data (a restore, an AOF cut short),
# the counter restarts from what the catalog's state file proves was already handed out.
_INCR_ABOVE = """
local value = redis.call('incr', KEYS[1])
local floor = tonumber(ARGV[1])
if value <= floor then
    value = floor + 1
    redis.call('set', KEYS[1], string.format('%d', value))
end
return value
"""

# The next sequence, in one call: INCR when the counter exists, else a new epoch from TIME.
# Values are kept as integer strings and checked, so a counter can never turn into a float.
_NEXT_SEQUENCE = """
if redis.replicate_commands then redis.replicate_commands() end
local current = tonumber(redis.call('get', KEYS[1]) or '')
local value
if current and current == math.floor(current) and current >= 0 and current < tonumber(ARGV[2]) then
    value = current + 1
else
    -- Missing (Redis lost its data) or not a safe integer (someone wrote to it): a new epoch,
    -- which is above every sequence the previous one handed out.
    local now = redis.call('time')
    value = tonumber(now[1]) * tonumber(ARGV[3]) + 1
end
local floor = tonumber(ARGV[1])
if value <= floor then value = floor + 1 end
if value > tonumber(ARGV[2]) then
    return redis.error_reply('sequence ' .. string.format('%d', value) .. ' would exceed 2^53 - 1')
end
redis.call('set', KEYS[1], string.format('%d', value))
return value
"""


def sequence_key(queue: str) -> str:
    return f"{queue}:sequence"


def fence_key(lock_name: str) -> str:
    return f"{lock_name}:fence"


def epoch_start(sequence: int) -> int:
    """The last number before the epoch ``sequence`` belongs to (sequences of an epoch are dense above it)."""
    return (sequence >> EPOCH_BITS) << EPOCH_BITS


def next_sequence(client: redis.Redis, queue: str, floor: int = 0) -> int:
    """The next batch sequence number: the order in which batches were submitted."""
    if not 0 <= floor < MAX_SEQUENCE:
        raise RedisUnavailableError(f"sequence floor {floor} is outside 0..2^53-1; the state file is damaged")
    try:
        return int(client.eval(_NEXT_SEQUENCE, 1, sequence_key(queue), floor, MAX_SEQUENCE, 2**EPOCH_BITS))
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot take the next sequence number ({sequence_key(queue)}): {exc}") from None


# The highest sequence handed out so far. A missing or broken counter starts its new epoch
# here (without taking a number), so that batches issued before Redis lost its data, and still
# in flight, count as issued.
_ISSUED_CEILING = """
if redis.replicate_commands then redis.replicate_commands() end
local current = tonumber(redis.call('get', KEYS[1]) or '')
if current and current == math.floor(current) and current >= 0 and current < tonumber(ARGV[1]) then
    return current
end
local now = redis.call('time')
local value = tonumber(now[1]) * tonumber(ARGV[2])
redis.call('set', KEYS[1], string.format('%d', value))
return value
"""


def issued_ceiling(client: redis.Redis, queue: str) -> int:
    """The highest sequence the counter has handed out: a message claiming a higher one is forged."""
    try:
        return int(client.eval(_ISSUED_CEILING, 1, sequence_key(queue), MAX_SEQUENCE, 2**EPOCH_BITS))
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot read the sequence counter ({sequence_key(queue)}): {exc}") from None


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
    """Sequences given up on. Members that are not safe integers (anyone can write to Redis) are ignored."""
    try:
        members = client.smembers(abandoned_key(queue))
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot list abandoned sequences: {exc}") from None
    return _safe_sequences(members)


def fence_and_abandoned(client: redis.Redis, fence: str, floor: int, queue: str) -> tuple[int, list[int]]:
    """The next fencing token (dense, and above ``floor``, the state file's last committed token)
    and ``abandoned_sequences(client, queue)``, in one round trip: a write takes both right after
    its read, and every round trip lengthens the lock's hold."""
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.eval(_INCR_ABOVE, 1, fence, floor)
            pipe.smembers(abandoned_key(queue))
            token, members = pipe.execute()
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot take the next number of {fence} and the abandoned sequences: {exc}"
                                    ) from None
    return int(token), _safe_sequences(members)


def _safe_sequences(members: Iterable[bytes | str]) -> list[int]:
    found = []
    for member in members:
        try:
            value = int(member)
        except ValueError:
            continue
        if 0 < value <= MAX_SEQUENCE:
            found.append(value)
    return sorted(found)


def forget_abandoned(client: redis.Redis, queue: str, sequences: list[int]) -> None:
    """Best effort, after a commit: a failure only means they are listed (and completed, harmlessly) again."""
    if not sequences:
        return
    try:
        client.srem(abandoned_key(queue), *sequences)
    except redis.RedisError:
        pass
