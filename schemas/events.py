"""The change stream's events: what each applied batch changed, field by field. Pure Pydantic.

One event per applied batch, published to a Redis Stream (``<queue>:events``) after the commit
that carried it (docs/commit-protocol.md, "The change stream"). ``event_id`` is stable (the
commit's fencing token and the batch's sequence): a consumer that sees an event twice (after a
crash between a commit and its publication) can drop the second by it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class FieldChange(BaseModel):
    """One field of one product: its value before and after."""

    model_config = ConfigDict(frozen=True)

    field: str
    old: Any = None
    new: Any = None
    old_absent: bool = False  # the field did not exist before (a created product, or a new field)
    new_absent: bool = False  # the field does not exist after


class ProductChange(BaseModel):
    """A product created or changed, with each field that changed."""

    model_config = ConfigDict(frozen=True)

    product_id: str
    created: bool = False
    deleted: bool = False  # removed (a revert with --delete-created): every field's ``new_absent`` is set
    fields: list[FieldChange]


class ChangeEvent(BaseModel):
    """An applied batch, as the change stream carries it."""

    model_config = ConfigDict(frozen=True)

    event_id: str  # "<fence>-<sequence>": the same each time this event is published
    fence: int
    batch_id: str
    sequence: int
    source: str
    committed_at: float  # Unix time of the commit
    backup: str | None  # the backup that holds the catalog from before this batch's commit
    changes: list[ProductChange]
