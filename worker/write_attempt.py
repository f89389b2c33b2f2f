"""One locked write attempt of the store, and the values that travel with it. No Celery here."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from catalog_core.errors import CatalogError, FencedError, ProductNotYetCreatedError
from catalog_core.sequence import forget_abandoned
from schemas import BatchResult, BatchStatus
from worker.atomic import discard
from worker.catalog_digest import digest_of
from worker.catalog_image import CatalogImage
from worker.commit import commit
from worker.lock import HeldLock
from worker.merge import MergeOutcome
from worker.outbox import publish_committed
from worker.recovery import Recovered
from worker.state import CatalogState, current_identity, read_state, state_path

if TYPE_CHECKING:
    from worker.store import CatalogStore


@dataclass
class BatchRequest:
    """One batch to apply: its records (size-checked), id, sequence (None: taken under the lock),
    records digest, and whether this is its final attempt."""

    records: Sequence[Any]
    batch_id: str
    sequence: int | None
    digest: str
    final_attempt: bool = True
    source: str = "api"
    # Records decided under the lock, from the state of that moment (a revert): replaces ``records``.
    planner: Callable[[CatalogState], Planned] | None = None


class Planned(NamedTuple):
    """A planner's batch: records to merge, and products to remove (a revert's --delete-created)."""

    records: Sequence[Any]
    deletions: Sequence[str] = ()


Outcome = BatchResult | CatalogError


@dataclass(frozen=True)
class CommitStats:
    """One write of ``apply_group``, for metrics: how many batches, the lock wait, the locked part."""

    batches: int
    lock_wait_seconds: float
    commit_seconds: float
    committed_at: float  # Unix time
    results: tuple[BatchResult, ...] = ()  # the outcomes it decided (not those left to a retry)


class WriteAttempt:
    """One locked attempt: the lock, the fencing token, the state drafted from what was read."""

    def __init__(self, store: CatalogStore, held: HeldLock, recovered: Recovered, fence: int) -> None:
        self.store, self.held, self.fence = store, held, fence
        self.recovered = recovered
        self.state = recovered.state.draft()  # recovered.state stays as read if this attempt starts over
        # Of the state file exactly as read (fstat of the descriptor): a second stat could
        # already see a commit that landed after the read, and miss it.
        self.state_identity = recovered.state_identity
        self.image = recovered.image
        self.abandoned: list[int] = []

    def check(self) -> None:
        """Right before the commit point: still the lock owner, and nobody committed since our read.

        Any change of the state file since our read means start over, whatever its fence: a
        writer paused past its lock's expiry may have committed inside our window, and its
        commit must be read, not overwritten.
        """
        self.held.ensure_held()
        if current_identity(state_path(self.store.path)) != self.state_identity:
            committed = read_state(state_path(self.store.path))
            last = committed.fence if committed else 0
            raise FencedError(f"the state file changed since it was read (committed fence {last}, ours "
                              f"{self.fence}): another writer committed")

    def commit(self, image: CatalogImage | None, backup: Path | None) -> None:
        """Commit the draft, and ``image`` when the catalog changed; then keep both for the next write."""
        new_catalog = None if image is None else image.parts()
        self.state.fence = self.fence
        committed_at = time.time()
        for event in self.state.events:
            event.committed_at = committed_at
        if new_catalog is not None:
            self.state.commits += 1
            self.state.catalog_own_layout = not isinstance(image, AsWritten)  # a restore writes the backup as it is
        try:
            committed = commit(self.store.path, new_catalog, self.state, self.check, self.store.window,
                               None if image is None else image.digest())
        except BaseException:
            discard(backup)  # the commit did not happen: nor did its backup
            raise
        kept = self.image if image is None else image.sealed_as(committed.catalog_sha256)
        # A commit of the state only leaves the catalog file as it was read: untouched, backup unlinked.
        seen = self.recovered.catalog_seen if image is None else committed.catalog_seen
        self.store.remember(Recovered(self.state.settled(), kept, None, committed.state_identity, seen))
        # Past the commit point nothing may fail the batch: this is best effort.
        forget_abandoned(self.store.redis, self.store.settings.queue, self.abandoned)
        if publish_committed(self.store.redis, self.store.settings.queue, self.store.settings.events_maxlen,
                             self.state):
            self.store.events_accepted_through = self.fence
        if backup is not None:
            self.store.hold_backup_cap(backup)


class AsWritten(CatalogImage):
    """A restored backup is written back byte for byte, whatever its layout."""

    def __init__(self, image: CatalogImage, data: bytes) -> None:
        super().__init__(image.ids, image.entries, image.sha256)
        self._data = data

    def parts(self) -> list[bytes | memoryview]:
        return [self._data]

    def digest(self) -> str:
        return digest_of(self._data)

    def sealed_as(self, sha256: str | None) -> CatalogImage:
        self.sha256 = sha256  # its entries stay apart: the file is not in our layout
        return self


def order_key(request: BatchRequest, index: int) -> tuple[bool, int, int]:
    """Sequence order; batches without a sequence take one under the lock, after the others, in turn."""
    return (request.sequence is None, request.sequence or 0, index)


def batch_status(outcome: MergeOutcome, batch_id: str, sequence: int, state: CatalogState,
                 final_attempt: bool) -> BatchStatus:
    """A merged batch's status; ``ProductNotYetCreatedError`` when it only patches products that
    lower-sequence batches, still pending, may create (and this is not its final attempt)."""
    if not outcome.errors:
        return BatchStatus.APPLIED if outcome.changed else BatchStatus.UNCHANGED
    only_missing = bool(outcome.missing_products) and all(
        error.product_id in outcome.missing_products for error in outcome.errors
    )
    if only_missing and not final_attempt and state.lower_pending(sequence):
        missing = ", ".join(sorted(outcome.missing_products))
        raise ProductNotYetCreatedError(
            f"batch {batch_id} patches products that do not exist yet ({missing}) while batches with a "
            "lower sequence are pending; retrying"
        )
    return BatchStatus.REJECTED
