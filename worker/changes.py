"""What changed in a product, field by field, with old and new values. Pure: no I/O.

One shape for every place that shows a change: the change stream's events, ``catalog
history``, ``catalog diff``, ``apply --dry-run`` and ``catalog revert``. A field that did not
exist has the old (or new) value ``None`` and ``absent`` set, so that "set to null" and "not
there" stay distinguishable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.events import FieldChange, ProductChange

__all__ = ["FieldChange", "ProductChange", "field_changes", "product_change"]


def field_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[FieldChange]:
    """The fields whose value differs between ``before`` (None: the product did not exist) and ``after``.

    Fields are listed in ``after``'s order, then the fields only ``before`` had.
    """
    old = before or {}
    changes = []
    for name, value in after.items():
        if name not in old:
            changes.append(FieldChange(field=name, new=value, old_absent=True))
        elif old[name] != value:
            changes.append(FieldChange(field=name, old=old[name], new=value))
    for name, value in old.items():
        if name not in after:
            changes.append(FieldChange(field=name, old=value, new_absent=True))
    return changes


def product_change(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> ProductChange | None:
    """The change from ``before`` to ``after``; None when nothing differs."""
    fields = field_changes(before, after)
    if not fields:
        return None
    return ProductChange(product_id=str(after["product_id"]), created=before is None, fields=fields)
