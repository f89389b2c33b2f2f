"""What changed in a product, field by field, with old and new values. Pure: no I/O.

One shape for every place that shows a change: the change stream's events, ``catalog
history``, ``catalog diff``, ``apply --dry-run`` and ``catalog revert``. A field that did not
exist has the old (or new) value ``None`` and ``absent`` set, so that "set to null" and "not
there" stay distinguishable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from schemas.events import FieldChange, ProductChange

__all__ = ["FieldChange", "ProductChange", "change_event", "field_change_values", "field_changes", "product_change",
           "product_removal"]


def field_change_values(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``field_changes`` as JSON values (``FieldChange.model_dump(mode="json")`` of each), built
    directly: an event carries one per changed field of every product of a batch, and a model
    per field would cost more than the merge itself. Values are a catalog's, already JSON."""
    old = before or {}
    changes = []
    for name, value in after.items():
        if name not in old:
            changes.append({"field": name, "old": None, "new": value, "old_absent": True, "new_absent": False})
        elif old[name] != value:
            changes.append({"field": name, "old": old[name], "new": value, "old_absent": False, "new_absent": False})
    for name, value in old.items():
        if name not in after:
            changes.append({"field": name, "old": value, "new": None, "old_absent": False, "new_absent": True})
    return changes


def field_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[FieldChange]:
    """The fields whose value differs between ``before`` (None: the product did not exist) and ``after``.

    Fields are listed in ``after``'s order, then the fields only ``before`` had.
    """
    return [FieldChange(**change) for change in field_change_values(before, after)]


def product_change(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> ProductChange | None:
    """The change from ``before`` to ``after``; None when nothing differs."""
    fields = field_changes(before, after)
    if not fields:
        return None
    return ProductChange(product_id=str(after["product_id"]), created=before is None, fields=fields)


def product_removal(before: Mapping[str, Any]) -> ProductChange:
    """A product removed: every field it had, gone."""
    return ProductChange(product_id=str(before["product_id"]), deleted=True,
                         fields=[FieldChange(field=name, old=value, new_absent=True) for name, value in before.items()])


def change_event(fence: int, batch_id: str, source: str, sequence: int, backup: Path | None,
                 changed: Mapping[str, Mapping[str, Any]], previous: Mapping[str, Mapping[str, Any]],
                 removed: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The change stream's event of an applied batch (``ChangeEvent``, as JSON values):
    ``changed`` products (with ``previous``, their values before; absent: created) and ``removed``
    ones. Its ``committed_at`` is set when the commit is written."""
    changes = [{"product_id": str(product["product_id"]), "created": product_id not in previous, "deleted": False,
                "fields": fields} for product_id, product in changed.items()
               if product_id not in removed and (fields := field_change_values(previous.get(product_id), product))]
    changes += [product_removal(product).model_dump(mode="json") for product in removed.values()]
    return {"event_id": f"{fence}-{sequence}", "fence": fence, "batch_id": batch_id, "sequence": sequence,
            "source": source, "committed_at": 0.0, "backup": backup.name if backup else None, "changes": changes}
