"""`catalog schema`: the JSON Schemas a producer in another language validates against.

They are checked with an independent validator (jsonschema) against a message the Python
producer really put on the queue, and against what a real store apply returns.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Any

import jsonschema
import orjson
import pytest
import redis

from catalog_core.sequence import _NEXT_SEQUENCE
from catalog_core.settings import Settings
from producers.api import Producer
from tests.e2e.test_plain_redis_producer import documented_block
from tests.helpers import product
from worker.store import CatalogStore


def printed_schema(name: str) -> dict[str, Any]:
    """The schema exactly as a user gets it: from the `catalog` command, in a subprocess."""
    shown = subprocess.run([sys.executable, "-m", "catalog_cli", "schema", name],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    schema: dict[str, Any] = orjson.loads(shown.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def problems(schema: dict[str, Any], instance: Any) -> list[str]:
    # "format" (submitted_at's date-time) is only an annotation in draft 2020-12 by default, and
    # jsonschema checks date-time only with an extra package: the worker checks it.
    validator = jsonschema.Draft202012Validator(schema)
    return [error.message for error in validator.iter_errors(instance)]


@pytest.fixture(scope="module")
def message_schema() -> dict[str, Any]:
    return printed_schema("message")


@pytest.fixture(scope="module")
def product_schema() -> dict[str, Any]:
    return printed_schema("product")


def queued_message(settings: Settings, records: list[dict[str, Any]], batch_id: str) -> dict[str, Any]:
    """The task argument of the message `Producer.submit` put on the Redis list, decoded by hand."""
    Producer(settings).submit(records, batch_id=batch_id, source="schema-test")
    raw = redis.Redis.from_url(settings.redis_url).lrange(settings.queue, 0, -1)
    assert len(raw) == 1
    args, kwargs, _embed = orjson.loads(base64.b64decode(orjson.loads(raw[0])["body"]))
    assert kwargs == {} and len(args) == 1
    message: dict[str, Any] = args[0]
    return message


def test_a_message_queued_by_the_python_producer_is_valid_against_the_printed_schema(
        settings: Settings, message_schema: dict[str, Any]) -> None:
    message = queued_message(settings, [product("S-1"), {"product_id": "S-2", "active": False}], "schema-ok-1")
    assert message["batch_id"] == "schema-ok-1" and isinstance(message["sequence"], int)
    assert problems(message_schema, message) == []


@pytest.mark.parametrize(("change", "why"), [
    ({"batch_id": None}, "no batch_id"),
    ({"batch_id": "-starts-with-a-dash"}, "batch_id must start with a letter or digit"),
    ({"batch_id": "has space"}, "batch_id has a space"),
    ({"batch_id": "x" * 201}, "batch_id longer than 200"),
    ({"schema_version": 3}, "a version no worker knows"),
    ({"sequence": 0}, "sequences start at 1"),
    ({"sequence": 2**53}, "a sequence JSON cannot carry exactly"),
    ({"sequence": "17"}, "a sequence as a string"),
    ({"items": {"product_id": "A"}}, "items not a list"),
    ({"source": ""}, "an empty source"),
    ({"priority": 1}, "a field the message does not have"),
])
def test_the_printed_message_schema_rejects_what_the_worker_refuses(
        settings: Settings, message_schema: dict[str, Any], change: dict[str, Any], why: str) -> None:
    message = queued_message(settings, [product("S-1")], "schema-bad-1")
    for key, value in change.items():
        if value is None:
            del message[key]
        else:
            message[key] = value
    assert problems(message_schema, message), why


def test_a_product_is_valid_and_a_mistyped_one_is_not(product_schema: dict[str, Any]) -> None:
    assert problems(product_schema, product("P-1", destination_city="Dubai", duration_hours=2.5)) == []
    assert problems(product_schema, product("P-2", prcing=[])), "an unknown field (a typo)"
    assert problems(product_schema, product("P-3", pricing=[{"tier_name": "Adult", "price_aed": "350"}])), \
        "a price as a string"
    assert problems(product_schema, {"product_id": "P-4", "product_name": "only a name"}), "pricing missing"


def test_a_patch_needs_only_its_product_id() -> None:
    patch_schema = printed_schema("patch")
    assert problems(patch_schema, {"product_id": "P-1", "active": False}) == []
    assert problems(patch_schema, {"active": False}), "no product_id"


def test_a_result_the_store_returns_is_valid_against_the_printed_result_schema(settings: Settings) -> None:
    store = CatalogStore(settings)
    applied = store.apply([product("R-1")], "result-1").model_dump(mode="json")
    again = store.apply([product("R-1")], "result-1").model_dump(mode="json")
    rejected = store.apply([{"product_id": "R-2"}], "result-2").model_dump(mode="json")
    assert (applied["status"], again["status"], rejected["status"]) == ("applied", "duplicate", "rejected")
    result_schema = printed_schema("result")
    for result in (applied, again, rejected):
        assert problems(result_schema, result) == []
    assert problems(result_schema, {**applied, "status": "done"}), "a status no worker reports"


def test_an_unknown_schema_name_is_a_usage_error_that_lists_the_choices() -> None:
    shown = subprocess.run([sys.executable, "-m", "catalog_cli", "schema", "products"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 2
    assert "message" in shown.stderr and "Traceback" not in shown.stderr


@pytest.mark.parametrize("name", ["message", "product"])
def test_the_schemas_in_the_message_format_page_are_what_the_command_prints(name: str) -> None:
    assert orjson.loads(documented_block(f"schema:{name}")) == printed_schema(name)


def test_the_sequence_script_in_the_message_format_page_is_the_one_the_python_producer_runs() -> None:
    assert documented_block("script:next-sequence").strip() == _NEXT_SEQUENCE.strip()
