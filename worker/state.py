"""The catalog's state file: fence, ledger of batch outcomes, field versions. Never in products.json.

``products.json.state`` sits beside the catalog. It is the commit record: it carries the
sha256 of the catalog it belongs to, so that a crash between the two renames of a commit is
recovered at the next load (see docs/commit-protocol.md). It is validated whole on load
(schemas/state.py) and names no file.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from catalog_core.errors import CatalogCorruptError
from catalog_core.sequence import epoch_start
from schemas import BatchResult
from schemas.state import STATE_FILE, STATE_FORMAT
from worker.atomic import read_regular_file

LEDGER_ERRORS_KEPT = 20
# Sequences above the watermark with an outcome. A gap that never closes (a producer that died
# between taking a sequence and queueing) must not make this list grow forever: past this many,
# the oldest gaps are given up on.
OPEN_SEQUENCES_KEPT = 1000
# Far above any real state (100,000 ledger ids are ~17 MB); bounds the memory a hostile file takes.
STATE_MAX_BYTES = 512 * 1024 * 1024
ERRORS_SHOWN = 3
# The previous release's ``pending_catalog``: a temp file name; only its token is kept.
_LEGACY_PENDING = re.compile(r"^\.[^/\\\x00]+\.([0-9a-f]{8})\.tmp$")


class FileIdentity(NamedTuple):
    """Which file, and which version of it: an inode alone is reused once newer commits freed it."""

    device: int
    inode: int
    mtime_ns: int
    size: int
    ctime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileIdentity:
        return cls(status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size, status.st_ctime_ns)


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
    pending_token: str | None = None  # the catalog temp file of a commit between its renames
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
        if entry.get("content_sha256") is None:
            entry.pop("content_sha256", None)  # compact: only batches with records carry one
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
    """Validate a whole state file; any wrong field is a ``CatalogCorruptError`` naming it."""
    try:
        raw: dict[str, Any] = dict(STATE_FILE.validate_json(data))
    except ValidationError as exc:
        raise _unreadable(source, _describe(exc)) from None
    legacy = raw.pop("pending_catalog", None)
    if legacy is not None:
        match = _LEGACY_PENDING.match(legacy)
        if match is None or raw.get("pending_token") is not None:
            raise _unreadable(source, f"pending_catalog: not the name of a catalog temp file: {legacy[:80]!r}")
        raw["pending_token"] = match.group(1)
    completed = raw["completed"]
    if any(later <= earlier for earlier, later in zip(completed, completed[1:], strict=False)):
        raise _unreadable(source, "completed: sequences must be unique and in increasing order")
    if completed and completed[0] <= raw["watermark"]:
        raise _unreadable(source, "completed: holds a sequence at or below the watermark")
    return CatalogState(**raw)


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    described = []
    for error in errors[:ERRORS_SHOWN]:
        where = ".".join(_printable(part) for part in error["loc"])
        if error["loc"][:1] == ("format",):
            described.append(f"unknown state format {str(error.get('input'))[:20]!r}")
        else:
            described.append(f"{where}: {error['msg']}" if where else error["msg"])
    more = f" (and {len(errors) - ERRORS_SHOWN} more)" if len(errors) > ERRORS_SHOWN else ""
    return "; ".join(described) + more


def _printable(part: str | int) -> str:
    """A key from the file, as it can be shown on a terminal: escaped if need be, and short."""
    text = str(part)
    return text[:80] if text.isprintable() else repr(text[:80])


def _unreadable(source: Path, details: str) -> CatalogCorruptError:
    return CatalogCorruptError(
        f"{source}: the catalog's state file is unreadable ({details}); move it aside to rebuild it from "
        "the catalog (the ledger of applied batches and the field versions are then lost)"
    )


def read_state_file(path: Path) -> tuple[CatalogState | None, FileIdentity | None]:
    """The state and the identity of exactly the file its bytes came from (``fstat`` of the read descriptor).

    (None, None) when there is no state file. Compare the identity with ``current_identity``
    later to know whether anyone replaced the file since: a second ``stat`` after the read could
    describe a file committed in between.
    """
    read = read_regular_file(path, lambda reason: CatalogCorruptError(
        f"{path}: the catalog's state file is {reason}" if reason == "not a regular file"
        else f"{path}: cannot read the catalog's state file: {reason}"), limit=STATE_MAX_BYTES)
    if read is None:
        return None, None
    data, status = read
    return parse_state(data, path), FileIdentity.of(status)


def current_identity(path: Path) -> FileIdentity | None:
    """The identity of the file at ``path`` now; None when there is none."""
    try:
        return FileIdentity.of(os.stat(path))
    except FileNotFoundError:
        return None


def read_state(path: Path) -> CatalogState | None:
    return read_state_file(path)[0]
