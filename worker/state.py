"""The catalog's state file: fence, ledger of batch outcomes, field versions. Never in products.json.

``products.json.state`` sits beside the catalog. It is the commit record: it carries the
sha256 of the catalog it belongs to, so that a crash between the two renames of a commit is
recovered at the next load (see docs/commit-protocol.md).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from catalog_core.errors import CatalogCorruptError
from catalog_core.sequence import epoch_start
from schemas import BatchResult

STATE_FORMAT = 1
LEDGER_ERRORS_KEPT = 20
# Sequences above the watermark with an outcome. A gap that never closes (a producer that died
# between taking a sequence and queueing) must not make this list grow forever: past this many,
# the oldest gaps are given up on.
OPEN_SEQUENCES_KEPT = 1000


def state_path(catalog: Path) -> Path:
    return catalog.with_name(catalog.name + ".state")


def previous_state_path(catalog: Path) -> Path:
    return catalog.with_name(catalog.name + ".state.prev")


def sha256_of(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


@dataclass
class CatalogState:
    """Everything beside the catalog that must change atomically with it."""

    format: int = STATE_FORMAT
    fence: int = 0
    catalog_sha256: str | None = None
    pending_catalog: str | None = None
    commits: int = 0
    duplicates: int = 0
    watermark: int = 0
    completed: list[int] = field(default_factory=list)
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, int]] = field(default_factory=dict)

    # --- sequences -----------------------------------------------------------------------
    def complete(self, sequence: int | None) -> None:
        """Mark a sequence as finished; every sequence up to ``watermark`` is."""
        if sequence is None or sequence <= self.watermark:
            return
        if epoch_start(sequence) > self.watermark:
            # A new sequence epoch (Redis lost its counter): every number below its start was
            # handed out before; those still running are done as far as ordering is concerned.
            self.watermark = epoch_start(sequence)
            self.completed = [s for s in self.completed if s > self.watermark]
        index = bisect.bisect_left(self.completed, sequence)
        if index == len(self.completed) or self.completed[index] != sequence:
            self.completed.insert(index, sequence)
        if len(self.completed) > OPEN_SEQUENCES_KEPT:
            self.watermark = self.completed[-OPEN_SEQUENCES_KEPT - 1]
            del self.completed[: -OPEN_SEQUENCES_KEPT]
        while self.completed and self.completed[0] == self.watermark + 1:
            self.watermark = self.completed.pop(0)

    def is_complete(self, sequence: int) -> bool:
        if sequence <= self.watermark:
            return True
        index = bisect.bisect_left(self.completed, sequence)
        return index < len(self.completed) and self.completed[index] == sequence

    def lower_pending(self, sequence: int) -> bool:
        """Whether some batch with a lower sequence has no outcome yet (it may still be queued)."""
        floor = max(self.watermark, epoch_start(sequence))
        below = [s for s in self.completed if floor < s < sequence]
        return floor + len(below) < sequence - 1

    @property
    def sequence_high(self) -> int:
        return max(self.completed[-1] if self.completed else 0, self.watermark)

    # --- ledger --------------------------------------------------------------------------
    def record(self, result: BatchResult, now: dt.datetime, keep_days: float, keep_ids: int) -> None:
        """Remember a batch's final outcome, then forget the oldest beyond the window."""
        # Compact: this is rewritten with every commit. Errors stay in `catalog rejected`.
        entry = result.model_dump(mode="json", include={"status", "created", "updated", "unchanged", "sequence",
                                                        "fence", "content_sha256"})
        if result.errors:
            entry["errors"] = [e.model_dump(mode="json") for e in result.errors[:LEDGER_ERRORS_KEPT]]
        if result.superseded:
            entry["superseded_fields"] = len(result.superseded)
        entry["recorded_at"] = round(now.timestamp(), 3)
        self.ledger.pop(result.batch_id, None)
        self.ledger[result.batch_id] = entry
        self.complete(result.sequence)
        cutoff = now.timestamp() - keep_days * 86400
        while self.ledger:
            oldest_id, oldest = next(iter(self.ledger.items()))
            if len(self.ledger) <= keep_ids and oldest["recorded_at"] >= cutoff:
                break
            del self.ledger[oldest_id]

    def original(self, batch_id: str) -> BatchResult | None:
        entry = self.ledger.get(batch_id)
        if entry is None:
            return None
        fields = {k: v for k, v in entry.items() if k in BatchResult.model_fields}
        return BatchResult.model_validate({"batch_id": batch_id, **fields})


def serialize_state(state: CatalogState) -> bytes:
    return orjson.dumps(state)  # orjson writes dataclasses natively, without asdict's deep copy


def parse_state(data: bytes, source: Path) -> CatalogState:
    try:
        raw = orjson.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown state format {raw.get('format') if isinstance(raw, dict) else raw!r}")
        return CatalogState(**raw)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise CatalogCorruptError(
            f"{source}: the catalog's state file is unreadable ({exc}); move it aside to rebuild it from "
            "the catalog (the ledger of applied batches and the field versions are then lost)"
        ) from None


def read_state(path: Path) -> CatalogState | None:
    try:
        return parse_state(path.read_bytes(), path)
    except FileNotFoundError:
        return None
