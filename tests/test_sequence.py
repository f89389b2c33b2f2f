"""catalog_core.sequence: counters that never go back below what the catalog has seen."""

from __future__ import annotations

import pytest
import redis

from catalog_core.errors import RedisUnavailableError
from catalog_core.sequence import (
    abandon_sequence, abandoned_key, abandoned_sequences, fence_and_abandoned, forget_abandoned, next_sequence,
    sequence_key,
)


def test_sequences_increase_by_one_within_an_epoch(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    first = next_sequence(client, "q")
    assert [next_sequence(client, "q") for _ in range(3)] == [first + 1, first + 2, first + 3]


def test_a_counter_lost_with_redis_data_starts_a_new_epoch_above_every_earlier_sequence(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    server_seconds = int(client.time()[0])
    client.set(sequence_key("q"), 57)  # a long-running counter from before epochs
    assert next_sequence(client, "q") == 58
    client.flushall()  # a restart without persistence
    after_loss = next_sequence(client, "q")
    # The reference: Redis' clock in seconds, shifted by the epoch bits, written out here.
    assert after_loss >= server_seconds * 1_048_576 + 1
    assert 58 < after_loss < 2**53


def test_a_counter_that_is_not_a_safe_integer_heals_instead_of_failing_every_enqueue(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(sequence_key("q"), "4.6116860184273879e+18")
    value = next_sequence(client, "q")
    assert 0 < value < 2**53
    assert client.get(sequence_key("q")) == str(value).encode()  # stored as an integer, never a float


def test_a_counter_behind_its_floor_jumps_above_it(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(sequence_key("q"), 3)  # Redis came back from an old AOF
    assert next_sequence(client, "q", floor=40) == 41
    assert next_sequence(client, "q", floor=40) == 42


def test_a_fencing_token_is_dense_never_at_or_below_its_floor_and_comes_with_the_abandoned_sequences(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    abandon_sequence(client, "q", 7)
    client.sadd(abandoned_key("q"), "not a number", 2**60)  # anyone can write to Redis
    assert fence_and_abandoned(client, "lock:fence", 0, "q") == (1, [7])
    assert fence_and_abandoned(client, "lock:fence", 0, "q") == (2, [7])
    # Redis lost the counter, the state file says 40 was committed: the next token is above it.
    assert fence_and_abandoned(client, "lock:fence", 40, "q") == (41, [7])
    assert client.get("lock:fence") == b"41"


def test_taking_a_fencing_token_with_redis_down_is_a_clear_error() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    with pytest.raises(RedisUnavailableError, match="cannot take the next number of lock:fence"):
        fence_and_abandoned(dead, "lock:fence", 0, "q")


def test_abandoned_sequences_are_listed_until_forgotten(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for sequence in (9, 4):
        abandon_sequence(client, "q", sequence)
    assert abandoned_sequences(client, "q") == [4, 9]
    forget_abandoned(client, "q", [4])
    assert abandoned_sequences(client, "q") == [9]


def test_abandoning_with_redis_down_is_a_no_op() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    abandon_sequence(dead, "q", 5)
