"""The catalog store: every write to the catalog goes through here. No Celery inside.

A write: take the lock, recover from any interrupted commit, take a fencing token, read the
state and the catalog (only now, so they are the latest), compute the outcome, then commit
catalog and state together (worker/commit.py), with a backup of the replaced catalog.

Exactly-once effects on top of at-least-once delivery:
- a batch id already in the state's ledger is not applied again: the result is ``duplicate``
  with the original outcome;
- fields last written by a batch with a higher sequence are skipped (``superseded``), so the
  catalog does not depend on the order in which batches ran;
- a writer whose fencing token is not above the last committed one does not commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import redis

from catalog_core.errors import BatchTooLargeError, FencedError, LockLostError, ProductNotYetCreatedError
from catalog_core.redis_client import connect
from catalog_core.sequence import (
    abandoned_sequences, fence_key, forget_abandoned, incr_above, issued_ceiling, next_sequence,
)
from catalog_core.settings import Settings
from schemas import BatchResult, BatchStatus
from schemas.batch import digest_of, records_json
from worker.backups import find_backup, read_backup, take_backup
from worker.catalog_file import parse_catalog, serialize_catalog
from worker.commit import Recovered, commit, recover_for_write
from worker.lock import HeldLock, catalog_lock
from worker.merge import MergeOutcome, merge_batch
from worker.state import CatalogState, current_identity, read_state, state_path

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 3


class _Write:
    """One locked attempt: the lock, the fencing token, and the state as it was read."""

    def __init__(self, store: CatalogStore, held: HeldLock, recovered: Recovered, fence: int) -> None:
        self.store, self.held, self.fence = store, held, fence
        self.state = recovered.state
        # Of the state file exactly as read (fstat of the descriptor): a second stat could
        # already see a commit that landed after the read, and miss it.
        self.state_identity = recovered.state_identity
        self.catalog_bytes = recovered.catalog_bytes  # the catalog as read under the lock, once
        self.abandoned: list[int] = []

    def products(self) -> list[dict[str, Any]]:
        return [] if self.catalog_bytes is None else parse_catalog(self.catalog_bytes, self.store.path)

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

    def commit(self, new_catalog: bytes | None) -> Path | None:
        backup: list[Path | None] = [None]

        def before_commit() -> None:
            self.check()
            if new_catalog is not None:
                backup[0] = take_backup(self.store.path, self.store.backup_dir)

        self.state.fence = self.fence
        if new_catalog is not None:
            self.state.commits += 1
        commit(self.store.path, new_catalog, self.state, before_commit)
        # Past the commit point nothing may fail the batch: this is best effort.
        forget_abandoned(self.store.redis, self.store.settings.queue, self.abandoned)
        return backup[0]


class CatalogStore:
    """Applies batches to, and restores backups of, one catalog file under the Redis lock."""

    def __init__(self, settings: Settings, client_factory: Callable[[str], redis.Redis] = connect) -> None:
        self.settings = settings
        self.path = settings.catalog_path
        self.backup_dir = settings.backup_path
        self._client_factory = client_factory
        self._client: redis.Redis | None = None

    @property
    def redis(self) -> redis.Redis:
        if self._client is None:
            self._client = self._client_factory(self.settings.redis_url)
        return self._client

    def _locked(self) -> AbstractContextManager[HeldLock]:
        return catalog_lock(self.redis, self.path, self.settings.lock_expire, self.settings.lock_timeout)

    def _begin(self, held: HeldLock) -> _Write:
        recovered = recover_for_write(self.path)
        # The fence key comes from the same read of the catalog id as the lock itself.
        fence = incr_above(self.redis, fence_key(held.name), recovered.state.fence)
        write = _Write(self, held, recovered, fence)
        write.abandoned = abandoned_sequences(self.redis, self.settings.queue)
        if write.abandoned:
            # Anyone can write to Redis: only sequences the counter issued are given up.
            ceiling = issued_ceiling(self.redis, self.settings.queue)
            for sequence in write.abandoned:
                if sequence <= ceiling:
                    write.state.complete(sequence)
        return write

    def _with_retries(self, attempt: Callable[[], Any]) -> Any:
        """A writer that lost its lock or was fenced starts over: new lock, fresh read."""
        for number in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return attempt()
            except (LockLostError, FencedError) as exc:
                if number == COMMIT_ATTEMPTS:
                    raise
                log.warning("write abandoned (%s); starting over (attempt %d)", exc, number + 1)
        raise AssertionError("unreachable")

    def check_size(self, records: Sequence[Any]) -> bytes:
        """Refuse batches over ``max_batch_items`` or ``max_batch_bytes`` before any work is done;
        return the records' canonical JSON, which also gives their digest.

        Producers check too, but a message can come from anyone with Redis access.
        """
        BatchTooLargeError.check_items(len(records), self.settings.max_batch_items)
        canonical = records_json(records)
        BatchTooLargeError.check_bytes(len(canonical), self.settings.max_batch_bytes)
        return canonical

    def apply(self, records: Sequence[Any], batch_id: str, sequence: int | None = None,
              final_attempt: bool = True) -> BatchResult:
        """Merge-upsert ``records`` as one all-or-nothing batch and report what happened.

        ``sequence`` is the batch's submission order (taken now when None). When the batch
        only fails because it patches products that lower-sequence, still pending batches may
        create, and this is not the ``final_attempt``, ``ProductNotYetCreatedError`` asks for
        a retry instead of a rejection.
        """
        # Serialized and hashed once, outside the lock, not again on each attempt.
        digest = digest_of(self.check_size(records))
        result: BatchResult = self._with_retries(
            lambda: self._apply_once(records, batch_id, sequence, digest, final_attempt)
        )
        return result

    def _apply_once(self, records: Sequence[Any], batch_id: str, sequence: int | None, digest: str,
                    final_attempt: bool) -> BatchResult:
        with self._locked() as held:
            write = self._begin(held)
            state = write.state
            if sequence is None:
                sequence = next_sequence(self.redis, self.settings.queue, floor=state.sequence_high)
            original = state.original(batch_id)
            if original is not None:
                matches = None if original.content_sha256 is None else original.content_sha256 == digest
                if matches is False:
                    log.warning("batch %s was already %s with OTHER records: this submission is not applied",
                                batch_id, original.status.value)
                else:
                    log.info("batch %s was already %s: duplicate", batch_id, original.status.value)
                duplicate = BatchResult(batch_id=batch_id, status=BatchStatus.DUPLICATE, sequence=sequence,
                                        fence=write.fence, original=original, content_sha256=digest,
                                        content_matches=matches)
                state.complete(sequence)
                state.duplicates += 1
                write.commit(None)
                return duplicate
            outcome = merge_batch(write.products(), records, sequence, state.versions)
            status = self._status(outcome, batch_id, sequence, state, final_attempt)
            result = BatchResult(batch_id=batch_id, status=status, created=outcome.created, updated=outcome.updated,
                                 unchanged=outcome.unchanged, errors=outcome.errors, sequence=sequence,
                                 fence=write.fence, superseded=outcome.superseded, content_sha256=digest)
            state.versions.update(outcome.versions)
            state.record(result, dt.datetime.now(dt.UTC), self.settings.ledger_days, self.settings.ledger_max_ids)
            new_catalog = serialize_catalog(outcome.products) if status == BatchStatus.APPLIED else None
            backup = write.commit(new_catalog)
        log.info("batch %s (sequence %d) %s: %d created, %d updated, %d unchanged, %d superseded field(s)",
                 batch_id, sequence, status.value, result.created, result.updated, result.unchanged,
                 len(result.superseded))
        return result.model_copy(update={"backup": str(backup) if backup else None})

    @staticmethod
    def _status(outcome: MergeOutcome, batch_id: str, sequence: int, state: CatalogState,
                final_attempt: bool) -> BatchStatus:
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

    def restore(self, name: str) -> Path | None:
        """Put backup ``name`` back as the catalog, backing up the current version first (so it can be undone).

        The ledger and field versions are kept. Returns the backup taken of the replaced version.
        """
        backup = find_backup(self.path, self.backup_dir, name)
        data = read_backup(backup)  # by descriptor: not a link swapped in since it was listed
        parse_catalog(data, backup.path)  # never restore a backup that is itself broken

        def attempt() -> Path | None:
            with self._locked() as held:
                return self._begin(held).commit(data)

        restored: Path | None = self._with_retries(attempt)
        return restored
