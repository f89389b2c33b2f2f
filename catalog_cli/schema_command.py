"""``catalog schema``: the JSON Schemas of what crosses the queue, for producers in any language.

The schemas are generated from the Pydantic models the workers validate with, so they cannot
drift from the code. They are a first check, not the whole check: rules that JSON Schema cannot
state (no white space around a ``product_id``, ``validity_end`` not before ``validity_start``,
a record for a new product being complete) are checked by the worker only.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from pydantic import BaseModel

from schemas import BatchMessage, BatchResult, Product, ProductPatch

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class SchemaName(StrEnum):
    """What ``catalog schema`` can print."""

    PRODUCT = "product"
    PATCH = "patch"
    MESSAGE = "message"
    RESULT = "result"


# What each schema describes, and whether it is what a producer sends (validation: the input
# the models accept) or what a worker writes (serialization: the output the models produce).
_MODELS: dict[SchemaName, tuple[type[BaseModel], str, str]] = {
    SchemaName.PRODUCT: (Product, "validation", "A complete product: a record for a product not in the catalog yet."),
    SchemaName.PATCH: (ProductPatch, "validation", "A record for a product already in the catalog: product_id "
                       "and the top-level fields it replaces."),
    SchemaName.MESSAGE: (BatchMessage, "validation", "The one positional argument of the task catalog.ingest_batch "
                         "(docs/message-format.md). Each item is a product or a patch."),
    SchemaName.RESULT: (BatchResult, "serialization", "The `result` of a batch's Celery result "
                        "(Redis key celery-task-meta-<batch_id>) when its status is SUCCESS."),
}


def json_schema(name: SchemaName) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``name``, with its dialect and a description of its use."""
    model, mode, use = _MODELS[name]
    generated = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    described = f"{use}\n\n{generated['description']}" if generated.get("description") else use
    return {"$schema": DIALECT, **generated, "description": described}


def schema(
    name: Annotated[SchemaName, typer.Argument(
        help="product: a new product; patch: a record for an existing product; message: the batch message "
             "(the task's argument); result: a batch's outcome.",
        case_sensitive=False, show_default=False)],
    compact: Annotated[bool, typer.Option("--compact", help="One line, no indentation.")] = False,
) -> None:
    """Print the JSON Schema of a product, a patch, a batch message or a batch result.

    For producers written in any language: validate what you send before queueing it, or
    generate types from it. The message format itself (Redis key, envelope, task id, sequence)
    is in docs/message-format.md.

    The schemas come from the same models the workers use, and are a first check only: the
    worker also refuses a product_id with white space around it, a validity_end before its
    validity_start, and a record for a new product that is not a complete product.

    Examples:

        catalog schema message > message.schema.json

        catalog schema product --compact | jq .required
    """
    # Field order kept as in the models: it is the order of the catalog's fields.
    option = 0 if compact else orjson.OPT_INDENT_2
    sys.stdout.buffer.write(orjson.dumps(json_schema(name), option=option) + b"\n")
    sys.stdout.flush()
