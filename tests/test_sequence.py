"""catalog_core.sequence: counters that never go back below what the catalog has seen."""

from __future__ import annotations

import redis

from catalog_core.sequence import (
    abandon_sequence, abandoned_sequences, forget_abandoned, incr_above, next_sequence, sequence_key,
)


def test_sequences_increase(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert [next_sequence(client, "q") for _ in range(3)] == [1, 2, 3]


def test_a_counter_behind_its_floor_jumps_above_it(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(sequence_key("q"), 3)  # Redis came back from an old AOF
    assert next_sequence(client, "q", floor=40) == 41
    assert next_sequence(client, "q", floor=40) == 42
    assert incr_above(client, "other", floor=0) == 1


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
