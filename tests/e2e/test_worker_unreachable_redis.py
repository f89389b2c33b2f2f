"""Redis that cannot be reached, or that fails at the publish itself: a message, exit code 3, no traceback.

The first tests point at a port where nothing listens: they fail at the PING of the first
connection. The publish-failure branch of ``Producer.submit`` (PING and sequence fine, then
the broker publish fails) needs Redis to answer first and fail afterwards: a proxy lets the
producer's first connection through and cuts every later one (Celery's publish connection),
the way a broker that goes away between connect and publish does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress

import pytest

from catalog_core.errors import RedisUnavailableError
from catalog_core.sequence import abandoned_sequences
from catalog_core.settings import load_settings
from producers.api import Producer
from tests.e2e.worker_fixtures import FAST_LIMITS, Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product, write_jsonl

pytestmark = pytest.mark.slow

NOBODY = "redis://127.0.0.1:1/0"  # port 1: nothing listens there
BOUND_S = 30.0


class FirstConnectionOnlyProxy:
    """A TCP proxy to Redis that forwards its first ``allowed`` connections and cuts the rest at once."""

    def __init__(self, upstream_port: int, allowed: int = 1) -> None:
        self.upstream_port, self.allowed = upstream_port, allowed
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.cut = 0
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted > self.allowed:
                self.cut += 1
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self._sockets:
            with suppress(OSError):
                sock.close()


@pytest.fixture
def broker_gone_at_publish(stack: Stack) -> Iterator[FirstConnectionOnlyProxy]:
    port = int(stack.settings.redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = FirstConnectionOnlyProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()


def test_catalog_enqueue_exits_3_quickly_with_a_clear_message_when_redis_is_unreachable(stack: Stack) -> None:
    batch = write_jsonl(stack.tmp_path / "batch.jsonl", [product("NEVER-1")])

    started = time.monotonic()
    done = stack.cli("enqueue", str(batch), "--redis-url", NOBODY, timeout=BOUND_S + 30)
    elapsed = time.monotonic() - started

    assert done.returncode == 3, done.stdout + done.stderr
    assert elapsed < BOUND_S, f"took {elapsed:.1f}s"
    assert "Traceback" not in done.stderr, done.stderr
    assert "cannot reach" in done.stderr and "127.0.0.1:1" in done.stderr, done.stderr
    assert "queued" not in done.stdout

    waited = stack.cli("enqueue", str(batch), "--redis-url", NOBODY, "--wait", "--json", timeout=BOUND_S + 30)
    assert waited.returncode == 3, waited.stdout + waited.stderr
    assert "Traceback" not in waited.stderr, waited.stderr


def test_producer_submit_raises_redis_unavailable_when_redis_is_unreachable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(path=tmp_path / "products.json", redis_url=NOBODY, **FAST_LIMITS)
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match="cannot reach"):
        Producer(settings).submit([product("NEVER-1")])
    assert time.monotonic() - started < BOUND_S


def test_a_publish_that_fails_after_the_ping_is_reported_and_its_sequence_given_up(
    stack: Stack, broker_gone_at_publish: FirstConnectionOnlyProxy,
) -> None:
    settings = stack.settings.model_copy(update={"redis_url": broker_gone_at_publish.url})
    producer = Producer(settings)
    with pytest.raises(RedisUnavailableError, match="cannot reach the broker") as info:
        producer.submit([product("NEVER-1")], batch_id="never-published")
    assert broker_gone_at_publish.accepted == 1 + broker_gone_at_publish.cut >= 2  # the PING's, then the publish's
    assert "NEVER-1" not in str(info.value)
    assert stack.redis().llen(settings.queue) == 0
    taken = int(stack.redis().get(f"{settings.queue}:sequence") or 0)
    assert taken and abandoned_sequences(stack.redis(), settings.queue) == [taken]  # the sequence it had taken


def test_catalog_enqueue_exits_3_when_the_publish_itself_fails(
    stack: Stack, broker_gone_at_publish: FirstConnectionOnlyProxy,
) -> None:
    batch = write_jsonl(stack.tmp_path / "batch.jsonl", [product("NEVER-1")])
    done = stack.cli("enqueue", str(batch), "--batch-id", "never-published", "--redis-url", broker_gone_at_publish.url,
                     timeout=BOUND_S + 30)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "cannot reach the broker" in done.stderr, done.stderr
    assert "queued" not in done.stdout
    assert broker_gone_at_publish.cut >= 1, "the publish never opened its own connection: the branch was not reached"
    assert stack.redis().llen(stack.settings.queue) == 0
    taken = int(stack.redis().get(f"{stack.settings.queue}:sequence") or 0)
    assert taken and abandoned_sequences(stack.redis(), stack.settings.queue) == [taken]
