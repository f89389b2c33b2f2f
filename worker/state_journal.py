"""Writing the state file as a commit record: a small head, a journal of changes, a base segment.

Why: the ledger and the field versions grow with the catalog (about 8 MB for 10,000 products
and 20,000 batch ids) but a commit changes a few entries of them. Rewriting them whole on
every commit cost more than the catalog write itself. So the state file (the commit record,
still replaced by rename at the commit point) carries:

- the head: fence, catalog sha256 and file identity, pending token, counters, sequences;
- ``base``: the sha256 of a **base segment**, ``.products.json.state.<sha256>``, an immutable
  file holding the ledger and versions as of the last compaction;
- ``journal``: what each commit since then changed in the ledger and versions.

A commit appends its changes to the journal. When the journal passes ``JOURNAL_MAX_ENTRIES``
entries or ``JOURNAL_MAX_BYTES``, or once rewriting it has cost what a new base would
(``_cheaper_to_compact``), the commit compacts instead. (The commit's own change events never
count: they leave the journal at the next write, and a compaction keeps them, so compacting
could not shrink them.) It folds everything into a new base segment (trimming the ledger to its
window), written and fsynced before the commit point, and starts an empty journal. The commit
point does not move: it is still the rename of the state file, so the crash table of
docs/commit-protocol.md holds as it was. A base segment is named by its sha256 and checked
against it when read; bases referenced by neither the state file nor ``.state.prev`` are
deleted after a commit (``collect_bases``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
from collections import ChainMap
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from catalog_core.events import EncodedEvent, encoded_array
from schemas.state import STATE_FORMAT
from worker.atomic import read_regular_file, write_temp
from worker.state import (
    CatalogState,
    base_segment_path,
    fold_changes,
    previous_state_path,
    remember_base,
    state_path,
)
from worker.state_base import STATE_MAX_BYTES

log = logging.getLogger(__name__)

# A journal this long or this big is folded into a new base: the record stays small to read
# and write, and the base is rewritten at most once every this many commits.
JOURNAL_MAX_ENTRIES = 64
JOURNAL_MAX_BYTES = 1 << 20
# What writing a base costs beyond its bytes (a new file, its fsync and rename), counted as the
# bytes a record write costs in the same time: a file's creation and fsync took about what
# writing and fsyncing 256 KiB more of the record did (ext4, 2 shared cores).
BASE_FILE_BYTES = 256 << 10
HEAD_FIELDS = ("fence", "catalog_sha256", "pending_token", "catalog_file", "catalog_own_layout", "commits", "applied",
               "duplicates",
               "watermark", "completed", "base", "journal")


@dataclass(frozen=True)
class LedgerWindow:
    """How long batch ids are remembered: at least this many days and this many ids (settings)."""

    days: float = 30.0
    ids: int = 20_000


def encode_record(catalog: Path, state: CatalogState, window: LedgerWindow, now: dt.datetime | None = None) -> bytes:
    """The state file's bytes for committing ``state`` (a draft, or a whole state).

    A draft's changes are appended to its journal; a full journal, a state without a base
    (new, or read from the previous release's single file) or a whole state is compacted into
    a new base segment, written here. ``state`` is updated to match what is returned.
    """
    if isinstance(state.ledger, ChainMap) and isinstance(state.versions, ChainMap):
        changes = state.changes()
        if changes["ledger"] or changes["versions"] or changes.get("events"):
            state.journal.append(changes)
        compact = state.base is None and bool(state.ledger or state.versions)
    else:
        compact = bool(state.ledger or state.versions)  # a whole state (recovery, tools): its own base
    # This commit's change events, serialized once: a commit of many batches carries megabytes of
    # them (every changed field, old and new), which no compaction would make smaller.
    events = encoded_array(state.events) if state.events else None
    if not compact and len(state.journal) <= JOURNAL_MAX_ENTRIES:
        data = _record_bytes(state, events)
        journal_bytes = len(data) - len(events or b"")
        if journal_bytes <= JOURNAL_MAX_BYTES and not _cheaper_to_compact(catalog, state, journal_bytes):
            return data
        del data  # a compaction follows: one record in memory at a time (megabytes of events each)
    _compact(catalog, state, window, now or dt.datetime.now(dt.UTC))
    return _record_bytes(state, events)


def _cheaper_to_compact(catalog: Path, state: CatalogState, journal_bytes: int) -> bool:
    """Whether the journal's rewrites have cost what writing a new base would (its bytes and a file).

    Each commit rewrites the record, journal included: a journal of ``n`` entries of about
    ``e`` bytes has cost about ``n * n * e / 2`` bytes of writes since the base, and a compaction
    costs the base. Compacting once ``n * journal_bytes >= 2 * base`` keeps the state's bytes
    per commit near their least, ``sqrt(2 * base * e)``, whatever the batch size. Over 100
    100-record batches on a 1,000-product catalog, the fixed limits alone let the record grow to
    1 MiB (most of the catalog's size) and wrote 530 KB of state a commit, records and bases;
    this writes 209 KB. Small entries (1-record batches) reach ``JOURNAL_MAX_ENTRIES`` first, as
    before."""
    try:
        base_bytes = base_segment_path(state_path(catalog), state.base).stat().st_size if state.base else 0
    except OSError:
        base_bytes = 0  # missing or unreadable: the next read says so; a new base costs no more than its file
    return len(state.journal) * journal_bytes >= 2 * (base_bytes + BASE_FILE_BYTES)


class _SerializedEntries:
    """Journal entries serialized once, not at every commit that carries them.

    Each commit rewrites the whole record: up to ``JOURNAL_MAX_ENTRIES`` entries, about 1 MiB
    (2.6 ms of ``orjson.dumps`` per commit at 100-record batches), to add one entry. An entry
    is never changed once it is in a journal (a new commit's changes are a new entry; the outbox
    replaces an entry it strips of its events), so its bytes are kept, keyed by identity, with
    the entry itself (its id cannot be reused while it is kept). Only the entries of the last
    record this process encoded are kept (a worker has one writer; two stores in one process
    only miss more); a miss is only a ``dumps``, and a hit needs the very same entry object.
    """

    def __init__(self) -> None:
        self._kept: dict[int, tuple[dict[str, Any], bytes]] = {}

    def fragments(self, journal: list[dict[str, Any]]) -> list[orjson.Fragment]:
        kept, self._kept = self._kept, {}
        fragments = []
        for entry in journal:
            hit = kept.get(id(entry))
            data = hit[1] if hit is not None and hit[0] is entry else serialize_entry(entry)
            self._kept[id(entry)] = (entry, data)
            fragments.append(orjson.Fragment(data))
        return fragments


def serialize_entry(entry: dict[str, Any]) -> bytes:
    return orjson.dumps(entry)


_serialized = _SerializedEntries()


def _record_bytes(state: CatalogState, events: bytes | None = None) -> bytes:
    """The record's bytes; ``events``: ``state.events`` already serialized, put in as they are.
    The entry that carries them is this commit's own: it is serialized here, and kept no further."""
    carries = [events is not None and _carries(entry, state.events) for entry in state.journal]
    kept = iter(_serialized.fragments([entry for entry, own in zip(state.journal, carries, strict=True) if not own]))
    own_events = None if events is None else orjson.Fragment(events)  # only an entry that carries them uses it
    journal = [{**entry, "events": own_events} if own else next(kept)
               for entry, own in zip(state.journal, carries, strict=True)]
    record = {"format": STATE_FORMAT, **{name: getattr(state, name) for name in HEAD_FIELDS}, "journal": journal}
    return orjson.dumps(record)


def _carries(entry: dict[str, Any], events: list[EncodedEvent]) -> bool:
    """Whether a journal entry holds this very draft's events (the same objects, in order)."""
    held = entry.get("events")
    return held is not None and len(held) == len(events) and all(a is b for a, b in zip(held, events, strict=True))


def _compact(catalog: Path, state: CatalogState, window: LedgerWindow, now: dt.datetime) -> None:
    """Fold base and journal into a new base segment (fsynced, in place before the commit point)."""
    ledger, versions = _folded(state)
    state.ledger, state.versions = ledger, versions
    state.trim_ledger(now, window.days, window.ids)
    data = orjson.dumps({"format": STATE_FORMAT, "ledger": state.ledger, "versions": state.versions})
    sha256 = hashlib.sha256(data).hexdigest()
    state_file = state_path(catalog)
    target = base_segment_path(state_file, sha256)
    if not target.exists():
        # Written as a state temp file: a writer that loses the lock meanwhile has it removed
        # by the next one (step 1), like its state temp file.
        temp = write_temp(state_file, data)
        os.replace(temp, target)  # durable with the folder sync of the commit point (same folder)
    # The new base holds everything but this commit's events, which wait in the journal for
    # their publication like any commit's.
    state.base, state.journal = sha256, ([{"ledger": {}, "versions": {}, "events": state.events}] if state.events else [])
    remember_base(sha256, dict(state.ledger), dict(state.versions))


def _folded(state: CatalogState) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plain copies of a state's ledger and versions (a draft's layers folded, order kept)."""
    ledger, versions = state.ledger, state.versions
    if isinstance(ledger, ChainMap) and isinstance(versions, ChainMap):
        folded_ledger, folded_versions = dict(ledger.maps[1]), dict(versions.maps[1])
        fold_changes(folded_ledger, folded_versions, ledger.maps[0], versions.maps[0])
        return folded_ledger, folded_versions
    return dict(ledger), dict(versions)


def _base_pattern(state_file: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(state_file.name)}\.([0-9a-f]{{64}})$")


def _named_bases(path: Path, candidates: set[str]) -> set[str]:
    """The ``candidates`` (base sha256s) that the state file at ``path`` may name as its base.

    Its bytes are searched, not parsed: a record carries its commit's change events, megabytes
    for a group commit at 10,000 products, and parsing them twice per compaction cost 6 ms a
    commit (a prefix of it is not JSON either: reading its first 2 MB deleted the base of such a
    ``.state.prev``). A name found anywhere is kept, so a leftover costs only disk space until
    the next time; one spelled with JSON escapes (a hand edit) is found by parsing, only then."""
    try:
        read = read_regular_file(path, OSError, limit=STATE_MAX_BYTES)
    except OSError:
        return set()  # unreadable: it cannot be rolled back to, with or without its base
    if read is None:
        return set()
    data = read[0]
    named = {sha256 for sha256 in candidates if sha256.encode() in data}
    if named != candidates and b"\\u" in data:
        with suppress(orjson.JSONDecodeError, AttributeError, TypeError):  # not a record: names nothing
            named |= candidates & {orjson.loads(data).get("base")}
    return named


def collect_bases(catalog: Path, current: CatalogState) -> list[Path]:
    """Delete base segments that neither the state file nor ``.state.prev`` names. Under the lock,
    after a commit; best effort (a leftover is only disk space, collected next time)."""
    state_file = state_path(catalog)
    pattern = _base_pattern(state_file)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(catalog.parent))
    except OSError as exc:
        log.warning("could not list %s to remove old state segments: %s", catalog.parent, exc)
        return removed
    candidates = [(entry, match.group(1)) for entry in entries
                  if (match := pattern.match(entry.name)) is not None and match.group(1) != current.base]
    if not candidates:
        return removed  # the usual case: .state.prev is read only when there is something to delete
    kept = _named_bases(previous_state_path(catalog), {sha256 for _, sha256 in candidates})
    for entry, sha256 in candidates:
        if sha256 in kept:
            continue
        with suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed
