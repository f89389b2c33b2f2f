"""Task message bodies decoded by orjson in the worker: kombu's JSON decoder, minus its cost.

Why: kombu decodes JSON with the stdlib and an ``object_hook`` (for its ``{"__type__",
"__value__"}`` markers), a Python call per object; a 100-record batch holds over a thousand
objects, and a worker decodes each body twice (worker/bad_messages.py checks it in the consumer,
Celery's thread pool decodes it again to run the task). In 2-worker bursts of 100-record batches
at 10,000 products that stdlib decoding was 8% of the workers' Python time.

The result is kombu's, value for value. kombu's own decoder takes a body that holds a type
marker, one with a run of 19 digits or more (orjson makes an integer past 64 bits a float; the
stdlib keeps it exact), and one orjson refuses (``NaN``, ``1e400``, a lone surrogate, bytes that
are not UTF-8): it decodes it, or raises, exactly as before.
"""

from __future__ import annotations

from typing import Any

import orjson
from kombu.serialization import registry
from kombu.utils import json as kombu_json

CONTENT_TYPE = "application/json"
# Integers that may not fit in 64 bits, which orjson makes floats and the stdlib keeps exact:
# any run of 19 digits (2**63 has 19), found as 19 zeros once every digit reads "0" (a regular
# expression took 0.26 ms on a 35 KB body, this 0.02 ms). A run in a string only costs the slow path.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``kombu.utils.json.loads(data)``, by orjson whenever that gives the same value."""
    raw = data.encode(errors="surrogatepass") if isinstance(data, str) else bytes(data)
    if b"__type__" not in raw and _LONG_RUN not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # kombu's decoder decides: it may accept it (NaN), or it says why not
    return kombu_json.loads(data)


def install() -> None:
    """Decode JSON bodies with ``loads`` in this process; encoding stays kombu's."""
    registry.register("json", kombu_json.dumps, loads, content_type=CONTENT_TYPE, content_encoding="utf-8")
