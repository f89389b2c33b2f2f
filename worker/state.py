"""The catalog's state file: fence, ledger of batch outcomes, field versions. Never in products.json.

``products.json.state`` sits beside the catalog. It is the commit record: it carries the
sha256 of the catalog it belongs to, so that a crash between the two renames of a commit is
recovered at the next load (see docs/commit-protocol.md). It is validated whole on load
(schemas/state.py) and names no file.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import ChainMap
from collections.abc import Mapping, MutableMapping
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from catalog_core.errors import CatalogCorruptError
from catalog_core.events import EncodedEvent
from catalog_core.sequence import epoch_start
from schemas import BatchResult
from schemas.state import SNAPSHOT_FORMAT, STATE_FILE, STATE_FORMAT
from worker.atomic import read_regular_file
from worker.state_base import STATE_MAX_BYTES, base_segment, base_segment_path, describe, remember_base, unreadable

__all__ = ["base_segment_path", "remember_base"]  # with the state, for worker/state_journal.py

LEDGER_ERRORS_KEPT = 20
# Sequences above the watermark with an outcome. A gap that never closes (a producer that died
# between taking a sequence and queueing) must not make this list grow forever: past this many,
# the oldest gaps are given up on.
OPEN_SEQUENCES_KEPT = 1000
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


def had_state(catalog: Path) -> bool:
    """Whether ``catalog`` had a state file once: its previous version is there (every commit leaves
    one; the first links its own state). Asked when the state file is missing: deleted, not never written."""
    return os.path.lexists(previous_state_path(catalog))


@dataclass
class CatalogState:
    """Everything beside the catalog that must change atomically with it."""

    format: int = STATE_FORMAT
    fence: int = 0
    catalog_sha256: str | None = None
    pending_token: str | None = None  # the catalog temp file of a commit between its renames
    commits: int = 0
    applied: int = 0  # batches applied, over all commits (a group commit carries several)
    duplicates: int = 0
    watermark: int = 0
    completed: list[int] = field(default_factory=list)
    # Ledger and versions as folded from the base and the journal (worker/state_journal.py);
    # in a ``draft`` each is a ChainMap whose first map holds this write's changes.
    ledger: MutableMapping[str, dict[str, Any]] = field(default_factory=dict)
    versions: MutableMapping[str, dict[str, int]] = field(default_factory=dict)
    base: str | None = None  # sha256 of the base segment file the journal applies to
    journal: list[dict[str, Any]] = field(default_factory=list)  # the changes of each commit since the base
    catalog_file: list[int] | None = None  # [inode, size, mtime_ns] of the catalog this state committed
    catalog_own_layout: bool = False  # that catalog is in our layout (worker/catalog_layout.py: CatalogImage.from_own_bytes applies)
    events: list[EncodedEvent] = field(default_factory=list)  # a draft's change events: its journal entry's outbox

    # --- a write's copy ----------------------------------------------------------------------
    def draft(self) -> CatalogState:
        """A copy for one write attempt: ours stays as it is if the attempt starts over.

        Head fields are copied; ledger and versions are layered (ChainMap), so the copy costs
        nothing however large they are, and its changes are exactly the layers' first maps.
        """
        return replace(self, completed=list(self.completed), journal=list(self.journal), events=[],
                       ledger=ChainMap({}, self.ledger), versions=ChainMap({}, self.versions))

    def changes(self) -> dict[str, Any]:
        """What a draft changed in the ledger and versions: its journal entry."""
        ledger, versions = self.ledger, self.versions
        assert isinstance(ledger, ChainMap) and isinstance(versions, ChainMap), "only a draft has changes"
        entry: dict[str, Any] = {"ledger": dict(ledger.maps[0]), "versions": dict(versions.maps[0])}
        if self.events:
            entry["events"] = list(self.events)
        return entry

    def settled(self) -> CatalogState:
        """A committed draft as a plain state: its changes folded into the maps it was layered on.

        The maps are updated in place: call this only once the draft's commit is durable, when
        the state it was drafted from is no longer the catalog's.
        """
        ledger, versions = self.ledger, self.versions
        if isinstance(ledger, ChainMap) and isinstance(versions, ChainMap):
            fold_changes(ledger.maps[1], versions.maps[1], ledger.maps[0], versions.maps[0])
            return replace(self, ledger=ledger.maps[1], versions=versions.maps[1])
        return self

    def trim_ledger(self, now: dt.datetime, keep_days: float, keep_ids: int) -> None:
        """Forget the oldest ids beyond the window (at most ``keep_ids``, none older than ``keep_days``).

        Done when the journal is compacted, not at every batch: the ledger keeps at least the
        window, and at most one journal's batches more.
        """
        ledger = dict(self.ledger)
        cutoff = now.timestamp() - keep_days * 86400
        excess = max(0, len(ledger) - keep_ids)
        for batch_id in list(ledger):
            if excess <= 0 and ledger[batch_id]["recorded_at"] >= cutoff:
                break
            del ledger[batch_id]
            excess -= 1
        self.ledger = ledger

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
    def record(self, result: BatchResult, now: dt.datetime) -> None:
        """Remember a batch's final outcome (as the newest entry); ``trim_ledger`` forgets the oldest."""
        # Compact: this is rewritten with every commit. Errors stay in `catalog rejected`.
        entry = result.model_dump(mode="json", include={"status", "created", "updated", "unchanged", "sequence",
                                                        "fence", "content_sha256"})
        if entry.get("content_sha256") is None:
            entry.pop("content_sha256", None)  # compact: only batches with records carry one
        if result.errors:
            entry["errors"] = [e.model_dump(mode="json") for e in result.errors[:LEDGER_ERRORS_KEPT]]
        if result.superseded:
            entry["superseded_fields"] = len(result.superseded)
        if result.backup:
            entry["backup"] = Path(result.backup).name
        entry["recorded_at"] = round(now.timestamp(), 3)
        self.ledger.pop(result.batch_id, None)
        self.ledger[result.batch_id] = entry
        self.complete(result.sequence)

    def original(self, batch_id: str) -> BatchResult | None:
        entry = self.ledger.get(batch_id)
        if entry is None:
            return None
        fields = {k: v for k, v in entry.items() if k in BatchResult.model_fields}
        return BatchResult.model_validate({"batch_id": batch_id, **fields})


def fold_changes(ledger: MutableMapping[str, Any], versions: MutableMapping[str, Any],
                 new_ledger: Mapping[str, Any], new_versions: Mapping[str, Any]) -> None:
    """Apply one journal entry: a re-recorded batch id becomes the newest (the ledger is oldest first)."""
    for batch_id, entry in new_ledger.items():
        ledger.pop(batch_id, None)
        ledger[batch_id] = entry
    versions.update(new_versions)


SNAPSHOT_FIELDS = ("format", "fence", "catalog_sha256", "pending_token", "commits", "duplicates", "watermark",
                   "completed", "ledger", "versions")


def serialize_state(state: CatalogState) -> bytes:
    """The whole state as one self-contained file (format 1): what the previous release wrote.

    Still read (a state is migrated at its next commit) and written by tools and tests;
    commits write the journal format (worker/state_journal.py).
    """
    snapshot = {name: getattr(state, name) for name in SNAPSHOT_FIELDS}
    snapshot.update(format=1, ledger=dict(state.ledger), versions=dict(state.versions))
    return orjson.dumps(snapshot)


def parse_state(data: bytes, source: Path) -> CatalogState:
    """Validate a whole state file; any wrong field is a ``CatalogCorruptError`` naming it.

    Format 2 (the commit record) names its base segment, read from beside ``source`` and
    checked against its sha256; format 1 (one self-contained file) is read as it is.
    """
    try:
        raw: dict[str, Any] = dict(STATE_FILE.validate_json(data))
    except ValidationError as exc:
        raise unreadable(source, describe(exc)) from None
    legacy = raw.pop("pending_catalog", None)
    if legacy is not None:
        match = _LEGACY_PENDING.match(legacy)
        if match is None or raw.get("pending_token") is not None:
            raise unreadable(source, f"pending_catalog: not the name of a catalog temp file: {legacy[:80]!r}")
        raw["pending_token"] = match.group(1)
    completed = raw["completed"]
    if any(later <= earlier for earlier, later in zip(completed, completed[1:], strict=False)):
        raise unreadable(source, "completed: sequences must be unique and in increasing order")
    if completed and completed[0] <= raw["watermark"]:
        raise unreadable(source, "completed: holds a sequence at or below the watermark")
    if raw["format"] == SNAPSHOT_FORMAT:
        raw["format"] = STATE_FORMAT
        return CatalogState(**raw)
    ledger, versions = base_segment(source, raw["base"])
    for entry in raw["journal"]:
        fold_changes(ledger, versions, entry["ledger"], entry["versions"])
    return CatalogState(**raw, ledger=ledger, versions=versions)


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
