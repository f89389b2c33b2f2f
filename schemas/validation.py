"""Turning Pydantic errors into record errors, and checking a record without the catalog."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.product import MAX_PRODUCT_ID_LENGTH, ProductPatch, format_loc
from schemas.result import RecordError

NEW_PRODUCT_HINT = "required for a new product (no product with this product_id is in the catalog yet)"


def record_errors(exc: ValidationError, index: int, product_id: str | None, is_new: bool) -> list[RecordError]:
    """One ``RecordError`` per problem, with messages that tell a producer what to fix."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = format_loc(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{loc}' (not part of a product; check the spelling)"
        elif err["type"] == "missing" and is_new and len(err["loc"]) == 1:
            msg = f"field required: {NEW_PRODUCT_HINT}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        errors.append(RecordError(index=index, product_id=product_id, loc=loc, msg=msg))
    return errors


def readable_id(record: Any) -> str | None:
    """The record's product_id for error reports; an over-long one is cut, not repeated in every error."""
    if isinstance(record, dict) and isinstance(record.get("product_id"), str):
        product_id: str = record["product_id"]
        return product_id if len(product_id) <= MAX_PRODUCT_ID_LENGTH else product_id[:MAX_PRODUCT_ID_LENGTH] + "…"
    return None


def check_record(record: Any, index: int) -> list[RecordError]:
    """Errors that can be found in one record without the catalog: shape, types, unknown fields."""
    if not isinstance(record, dict):
        return [RecordError(index=index, msg=f"a record must be a JSON object, not {type(record).__name__}")]
    try:
        ProductPatch.model_validate(record)
    except ValidationError as exc:
        return record_errors(exc, index, readable_id(record), is_new=False)
    return []
