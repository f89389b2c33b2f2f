"""A batch popped from the queue cannot be lost before it is recorded as unacknowledged.

Stock kombu pops with BRPOP and only then records the message (ZADD unacked_index + HSET unacked):
Redis killed between the two (with ``appendfsync always``, so the pop is on disk) lost the batch.
The ``catalog-redis`` transport pops with BRPOPLPUSH into ``<queue>:claimed`` and records in one
Lua script that also takes the entry off the claim; a sweep puts back claims nobody recorded.
Real redis-server, real kombu connections in this process; the fault is a SIGKILL of Redis at a
fixed step (while the popped message is being built, before the record).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Queue

from devtools.redis_server import RedisServer
from worker import broker_transport
from worker.bad_messages import TolerantMessage
from worker.broker_transport import TRANSPORT

TASKS = Queue("tasks", Exchange("tasks"), "tasks")
# One list key per queue (what catalog_core/celery_config.py sets) and no waiting for the grace.
OPTIONS: dict[str, Any] = {"priority_steps": [0], "claim_grace": 0, "unacked_restore_throttle": 1}


@pytest.fixture
def durable_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own (it gets killed), every write on disk before it is answered."""
    server = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    try:
        yield server
    finally:
        server.stop()


def publish(url: str, body: Any) -> None:
    with Connection(url) as publisher:
        publisher.Producer().publish(body, exchange=TASKS.exchange, routing_key="tasks", declare=[TASKS])


def consume(connection: Connection, received: list[Any]) -> Consumer:
    consumer = Consumer(connection, [TASKS], callbacks=[lambda body, message: received.append((body, message))],
                        accept=["json"])
    consumer.consume()
    return consumer


def close_quietly(connection: Connection) -> None:
    try:
        connection.release()
    except (redis.RedisError, OSError):
        pass  # the server was killed under it: what a crashed worker leaves behind


def test_a_message_popped_just_before_redis_dies_is_kept_as_a_claim_and_swept_back_to_the_queue(
    durable_server: RedisServer,
) -> None:
    publish(durable_server.url, {"n": 1})
    dying = Connection(durable_server.url, transport=TRANSPORT, transport_options=OPTIONS)
    killed: list[bool] = []

    class RedisDiesHere(TolerantMessage):
        """Built after the pop and before the record (kombu's basic_consume callback)."""

        def __init__(self, payload: dict[str, Any], channel: Any = None, **kwargs: Any) -> None:
            if not killed:
                killed.append(True)
                durable_server.kill()
            super().__init__(payload, channel=channel, **kwargs)

    received: list[Any] = []
    try:
        dying.default_channel.Message = RedisDiesHere
        consume(dying, received)
        with pytest.raises(redis.ConnectionError):
            dying.drain_events(timeout=5)
        assert killed and not received
    finally:
        close_quietly(dying)

    durable_server.start()  # same port, same data folder: what the AOF kept
    client = durable_server.client()
    assert client.llen("tasks") == 0, "the pop itself was persisted"
    assert client.hlen("unacked") == 0, "the record never happened"
    assert client.llen("tasks:claimed") == 1, "the popped message must be kept as a claim"

    worker = Connection(durable_server.url, transport=TRANSPORT, transport_options=OPTIONS)
    try:
        consume(worker, received)
        qos = worker.default_channel.qos
        qos.restore_visible(num=10, interval=1)  # first pass: the claim is remembered, not moved
        assert client.llen("tasks:claimed") == 1 and client.llen("tasks") == 0
        qos.restore_visible(num=10, interval=1)  # still there after the grace (0 here): back in the queue
        assert client.llen("tasks:claimed") == 0 and client.llen("tasks") == 1
        assert client.hlen("tasks:claimed:seen") == 0

        worker.drain_events(timeout=5)
        assert [body for body, _ in received] == [{"n": 1}]
        assert client.llen("tasks:claimed") == 0, "a recorded message leaves the claim list"
        assert client.hlen("unacked") == 1
        received[0][1].ack()
        assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    finally:
        close_quietly(worker)


# A consumer that dies like kill -9 (os._exit: no cleanup, no restore) after the pop, before the record.
DIES_AFTER_THE_POP = textwrap.dedent("""
    import os, sys
    from kombu import Connection, Consumer, Exchange, Queue
    from worker.bad_messages import TolerantMessage
    from worker.broker_transport import TRANSPORT

    class DiesHere(TolerantMessage):
        def __init__(self, *args, **kwargs):
            os._exit(9)

    connection = Connection(sys.argv[1], transport=TRANSPORT,
                            transport_options={"priority_steps": [0], "claim_grace": 0})
    connection.default_channel.Message = DiesHere
    Consumer(connection, [Queue("tasks", Exchange("tasks"), "tasks")], callbacks=[print]).consume()
    connection.drain_events(timeout=10)
    sys.exit(0)
""")


def test_a_message_popped_by_a_consumer_killed_before_its_record_is_swept_back_and_delivered(
    durable_server: RedisServer,
) -> None:
    publish(durable_server.url, {"n": 5})
    dead = subprocess.run([sys.executable, "-c", DIES_AFTER_THE_POP, durable_server.url],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert dead.returncode == 9, dead.stderr
    client = durable_server.client()
    assert client.llen("tasks") == 0 and client.hlen("unacked") == 0
    assert client.llen("tasks:claimed") == 1, "the message the dead consumer popped must be kept as a claim"

    worker = Connection(durable_server.url, transport=TRANSPORT, transport_options=OPTIONS)
    received: list[Any] = []
    try:
        consume(worker, received)
        for _ in range(2):  # remembered, then put back (grace 0)
            worker.default_channel.qos.restore_visible(num=10, interval=1)
        worker.drain_events(timeout=5)
        assert [body for body, _ in received] == [{"n": 5}]
    finally:
        close_quietly(worker)


def test_a_healthy_delivery_leaves_no_claim_behind_and_a_fresh_claim_is_not_swept_before_the_grace(
    durable_server: RedisServer,
) -> None:
    publish(durable_server.url, {"n": 2})
    client = durable_server.client()
    connection = Connection(durable_server.url, transport=TRANSPORT,
                            transport_options={**OPTIONS, "claim_grace": 3600})
    received: list[Any] = []
    try:
        consume(connection, received)
        connection.drain_events(timeout=5)
        assert [body for body, _ in received] == [{"n": 2}]
        assert client.llen("tasks:claimed") == 0 and client.hlen("unacked") == 1

        client.lpush("tasks:claimed", b"a claim some worker is about to record")
        qos = connection.default_channel.qos
        for _ in range(3):
            qos.restore_visible(num=10, interval=1)
        assert client.lrange("tasks:claimed", 0, -1) == [b"a claim some worker is about to record"]
        assert client.llen("tasks") == 0
        client.delete("tasks:claimed")
        qos.restore_visible(num=10, interval=1)
        assert client.hlen("tasks:claimed:seen") == 0, "a claim that is gone is forgotten"
    finally:
        close_quietly(connection)


def test_a_malformed_entry_popped_through_the_claim_is_delivered_as_undecodable_and_leaves_the_claim(
    durable_server: RedisServer,
) -> None:
    publish(durable_server.url, {"n": 3})  # declares the queue
    client = durable_server.client()
    client.delete("tasks")
    client.lpush("tasks", b"\xffnot a kombu message")
    connection = Connection(durable_server.url, transport=TRANSPORT, transport_options=OPTIONS)
    received: list[Any] = []
    try:
        consume(connection, received)
        connection.drain_events(timeout=5)
        (_, message), = received
        assert "not JSON" in (message.undecodable or "")
        assert client.llen("tasks:claimed") == 0
        message.reject()
        assert client.hlen("unacked") == 0 and client.llen("tasks") == 0
    finally:
        close_quietly(connection)


def test_a_channel_that_consumes_several_list_keys_falls_back_to_brpop_with_a_warning(
    durable_server: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    publish(durable_server.url, {"n": 4})
    connection = Connection(durable_server.url, transport=TRANSPORT)  # kombu's default: four priority keys
    received: list[Any] = []
    try:
        with caplog.at_level(logging.WARNING, logger=broker_transport.log.name):
            consume(connection, received)
            connection.drain_events(timeout=5)
        assert [body for body, _ in received] == [{"n": 4}]
        assert "BRPOP" in caplog.text
        assert durable_server.client().llen("tasks:claimed") == 0
    finally:
        close_quietly(connection)
