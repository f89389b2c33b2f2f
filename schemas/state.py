"""The format of the catalog's state file (``products.json.state``), validated whole on load.

The file sits in a folder other people and programs can write to, so it is input like any
other: strict types (an int is an int, never a bool, a float or a string), no unknown keys,
counters non-negative and below 2**53 (exact in JSON everywhere). It names no file: the
catalog temp file of an interrupted commit is named by an 8-hex-digit token only, and the
path is derived from the catalog's own name (worker/commit.py).

TypedDicts rather than models: the state holds up to tens of thousands of ledger entries, and
plain dicts validated in one pass by pydantic-core (``validate_json``) cost about what parsing
the JSON alone did.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import NotRequired, TypedDict  # pydantic needs this TypedDict on Python < 3.12

from schemas.result import BatchStatus

STATE_FORMAT = 2
SNAPSHOT_FORMAT = 1
JOURNAL_ENTRIES_MAX = 10_000  # far above the compaction threshold: bounds a hostile record
SAFE_INTEGER_LIMIT = 2**53
TEMP_TOKEN_PATTERN = r"^[0-9a-f]{8}$"

Count = Annotated[int, Field(ge=0, lt=SAFE_INTEGER_LIMIT)]
# inode, size and mtime in nanoseconds (above 2**53): read by this program only.
FileNumber = Annotated[int, Field(ge=0, lt=2**63)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
TempToken = Annotated[str, Field(pattern=TEMP_TOKEN_PATTERN)]
Timestamp = Annotated[float, Field(ge=0, allow_inf_nan=False)]
STRICT = ConfigDict(strict=True, extra="forbid", cache_strings=False)


@with_config(STRICT)
class LedgerError(TypedDict):
    """One of the first errors of a rejected batch (schemas.RecordError, dumped)."""

    index: Count | None
    product_id: NotRequired[str | None]
    loc: NotRequired[str]
    msg: str


@with_config(STRICT)
class LedgerEntry(TypedDict):
    """The final outcome of one batch id, compacted (worker/state.py ``CatalogState.record``)."""

    status: BatchStatus
    created: Count
    updated: Count
    unchanged: Count
    sequence: Count | None
    fence: Count | None
    recorded_at: Timestamp
    errors: NotRequired[list[LedgerError]]
    superseded_fields: NotRequired[Count]
    content_sha256: NotRequired[Sha256 | None]
    # The backup that holds the catalog from before the commit that carried this batch.
    backup: NotRequired[Annotated[str, Field(pattern=r"^[^/\\\x00]{1,255}$")]]


BatchId = Annotated[str, Field(min_length=1, max_length=1000)]
Ledger = dict[BatchId, LedgerEntry]
Versions = dict[str, dict[str, Count]]


@with_config(STRICT)
class SnapshotFile(TypedDict):
    """The whole state in one file (format 1, the previous release's; read, and migrated at the next commit).
    ``pending_catalog`` is an older release's field, read for migration only."""

    format: Literal[1]
    fence: Count
    catalog_sha256: Sha256 | None
    pending_token: NotRequired[TempToken | None]
    pending_catalog: NotRequired[str | None]
    commits: Count
    duplicates: Count
    watermark: Count
    completed: list[Count]
    ledger: Ledger
    versions: Versions


@with_config(ConfigDict(strict=True, extra="allow", cache_strings=False))
class JournalEvent(TypedDict):
    """A change event waiting in the journal to be published. It is published as it is (its other
    keys kept, in order), so only what the outbox reads (worker/outbox.py) is checked here:
    readers of the stream check the whole event (``ChangeEvent``)."""

    event_id: Annotated[str, Field(max_length=64)]
    fence: Count
    batch_id: BatchId


@with_config(STRICT)
class JournalEntry(TypedDict):
    """What one commit changed in the ledger and the field versions, and its change events until
    they are known to be published (the outbox: docs/commit-protocol.md, "The change stream")."""

    ledger: Ledger
    versions: Versions
    events: NotRequired[Annotated[list[JournalEvent], Field(max_length=100_000)]]


@with_config(STRICT)
class StateRecord(TypedDict):
    """The state file (format 2): the commit record. Ledger and versions are the base segment
    (``base``, a file named by its sha256) plus the ``journal`` of changes since, so a commit
    rewrites only what changed (worker/state_journal.py)."""

    format: Literal[2]
    fence: Count
    catalog_sha256: Sha256 | None
    pending_token: TempToken | None
    catalog_file: Annotated[list[FileNumber], Field(min_length=3, max_length=3)] | None
    catalog_own_layout: NotRequired[bool]
    commits: Count
    applied: Count
    duplicates: Count
    watermark: Count
    completed: list[Count]
    base: Sha256 | None
    journal: Annotated[list[JournalEntry], Field(max_length=JOURNAL_ENTRIES_MAX)]


@with_config(STRICT)
class BaseSegment(TypedDict):
    """The ledger and the field versions as of a compaction."""

    format: Literal[2]
    ledger: Ledger
    versions: Versions


STATE_FILE = TypeAdapter(Annotated[Union[SnapshotFile, StateRecord], Field(discriminator="format")])  # noqa: UP007
BASE_SEGMENT = TypeAdapter(BaseSegment)
