"""The worker's JSON decoder for message bodies gives kombu's values, or kombu's errors, for any input.

The reference is kombu's own decoder (the stdlib with kombu's type hook), not the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st
from kombu.serialization import loads as kombu_registry_loads, registry
from kombu.utils import json as kombu_json

from catalog_core.settings import Settings
from worker import message_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def typed(value: Any) -> Any:
    """``value`` with every number tagged by its type: 1 and 1.0 (or 2**64 and 2.0**64) differ."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, bool | int | float):
        return (type(value).__name__, repr(value))
    return value


def outcome(decode: Any, data: Any) -> Any:
    try:
        return "value", typed(decode(data))
    except Exception as exc:  # noqa: BLE001 - the very exception is what is compared
        return "error", type(exc), str(exc)


@hypothesis_settings(max_examples=400, deadline=None)
@given(json_values, st.sampled_from(["bytes", "str", "memoryview", "bytearray"]))
def test_any_json_document_decodes_to_the_value_kombu_gives(value: Any, form: str) -> None:
    text = json.dumps(value, ensure_ascii=False)
    data = {"bytes": text.encode(), "str": text, "memoryview": memoryview(text.encode()),
            "bytearray": bytearray(text.encode())}[form]
    assert outcome(message_json.loads, data) == outcome(kombu_json.loads, data)


@hypothesis_settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=32).map(str.encode))
def test_any_bytes_decode_or_fail_exactly_as_with_kombu(data: bytes) -> None:
    assert outcome(message_json.loads, data) == outcome(kombu_json.loads, data)


@pytest.mark.parametrize("data", [
    b'{"price": NaN}', b"[1e400]", b"[18446744073709551616]", b"[-9223372036854775809]", b'"\\ud800"',
    b"\xff", b"\xef\xbb\xbf[1]", b"[1] x", b"", b" ",
])
def test_the_documents_orjson_reads_otherwise_are_left_to_kombu(data: bytes) -> None:
    assert outcome(message_json.loads, data) == outcome(kombu_json.loads, data)


def test_a_kombu_type_marker_is_decoded_as_kombu_does() -> None:
    data = kombu_json.dumps({"eta": dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)}).encode()
    assert message_json.loads(data) == kombu_json.loads(data) == {"eta": dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)}


def test_a_worker_app_decodes_json_bodies_with_it_and_encodes_as_before(settings: Settings) -> None:
    from worker.app import create_app

    encoder = registry._encoders["json"]
    create_app(settings)
    assert registry._decoders[message_json.CONTENT_TYPE] is message_json.loads
    assert registry._encoders["json"] == encoder
    assert kombu_registry_loads(b'[[1], {"a": 2}, {}]', "application/json", "utf-8") == [[1], {"a": 2}, {}]
