"""A producer whose Redis cannot be reached fails fast, with a message and exit code 3, no traceback."""

from __future__ import annotations

import time

import pytest

from catalog_core.errors import RedisUnavailableError
from catalog_core.settings import load_settings
from producers.api import Producer
from tests.e2e.worker_fixtures import FAST_LIMITS, Stack, stack, stack_factory  # noqa: F401 - fixtures
from tests.helpers import product, write_jsonl

pytestmark = pytest.mark.slow

NOBODY = "redis://127.0.0.1:1/0"  # port 1: nothing listens there
BOUND_S = 30.0


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


def test_producer_submit_raises_redis_unavailable_when_redis_is_unreachable(tmp_path) -> None:
    settings = load_settings(path=tmp_path / "products.json", redis_url=NOBODY, **FAST_LIMITS)
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match="cannot reach"):
        Producer(settings).submit([product("NEVER-1")])
    assert time.monotonic() - started < BOUND_S
