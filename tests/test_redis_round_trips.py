"""What a warm writer asks Redis per commit: each round trip lengthens the lock's hold, and so
every other worker's wait. A round trip added here must be a choice, not an accident."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.client

from catalog_core.sequence import next_sequence
from catalog_core.settings import Settings
from tests.helpers import product
from worker.store import CatalogStore


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The commands sent from now on, one entry per round trip (a pipeline is one: ``[its commands]``)."""
    trips: list[str] = []
    single = redis.Redis.execute_command
    pipelined = redis.client.Pipeline.execute

    def one(self: redis.Redis, *args: Any, **options: Any) -> Any:
        trips.append(str(args[0]).upper())
        return single(self, *args, **options)

    def many(self: redis.client.Pipeline, *args: Any, **options: Any) -> Any:
        trips.append("[" + " ".join(str(command[0][0]).upper() for command in self.command_stack) + "]")
        return pipelined(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", one)
    monkeypatch.setattr(redis.client.Pipeline, "execute", many)
    yield trips


def test_a_warm_commit_of_one_batch_takes_five_round_trips_to_redis(
    settings: Settings, round_trips: list[str]
) -> None:
    store = CatalogStore(settings)
    store.apply([product("A")], "b1", next_sequence(store.redis, settings.queue))
    sequence = next_sequence(store.redis, settings.queue)  # as a producer takes it, before the worker
    assert store.sequence_issued(sequence)[0]  # the worker checks it as the message arrives, outside the lock
    round_trips.clear()
    assert store.apply([product("A", inclusions=["Transfers", "Lunch"])], "b2", sequence).status.value == "applied"
    assert round_trips == [
        "SET",  # 1. the lock, its value the holder record (SET NX EX; no GET first, see worker/lock.py)
        "[EVAL SMEMBERS]",  # 2. the fencing token and the abandoned sequences, together
        "EVALSHA",  # 3. the check before the commit point: extend the lock
        "[XADD]",  # 4. the change event (MULTI/EXEC); b1's was taken by Redis, so it is not looked for in the stream
        "EVALSHA",  # 5. the release
    ]
