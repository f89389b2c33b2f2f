"""The catalog store: every write to the catalog goes through here. No Celery inside.

A write is: take the lock, remove temp files of crashed writers, read the catalog (only now,
so that it is the latest), compute the new one, write it to a temp file, take a backup of the
current file, confirm the lock is still ours, replace, sync the folder, release.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from catalog_core.errors import BatchTooLargeError
from catalog_core.redis_client import connect
from catalog_core.settings import Settings
from schemas import BatchResult, BatchStatus
from worker.atomic import atomic_write, remove_stale_temp_files
from worker.backups import find_backup, take_backup
from worker.catalog_file import parse_catalog, read_catalog, serialize_catalog
from worker.lock import HeldLock, catalog_lock
from worker.merge import merge_batch

log = logging.getLogger(__name__)


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

    def _locked(self):  # type: ignore[no-untyped-def]
        return catalog_lock(self.redis, self.path, self.settings.lock_expire, self.settings.lock_timeout)

    def _commit(self, data: bytes, held: HeldLock) -> Path | None:
        backup: list[Path | None] = [None]

        def before_replace() -> None:
            # Lock check first: a writer that lost the lock must leave no trace, not even a backup.
            held.ensure_held()
            backup[0] = take_backup(self.path, self.backup_dir)

        atomic_write(self.path, data, before_replace=before_replace)
        return backup[0]

    def check_size(self, records: Sequence[Any]) -> None:
        """Refuse batches over ``max_batch_items`` before any work is done."""
        limit = self.settings.max_batch_items
        if len(records) > limit:
            raise BatchTooLargeError(
                f"batch has {len(records)} records, over the limit of {limit} (CATALOG_MAX_BATCH_ITEMS); "
                "split it into smaller batches"
            )

    def apply(self, records: Sequence[Any], batch_id: str) -> BatchResult:
        """Merge-upsert ``records`` as one all-or-nothing batch and report what happened."""
        self.check_size(records)
        with self._locked() as held:
            for stale in remove_stale_temp_files(self.path):
                log.warning("removed %s, left by a writer that crashed", stale)
            current = read_catalog(self.path)
            outcome = merge_batch(current, records)
            result = BatchResult(
                batch_id=batch_id,
                status=BatchStatus.REJECTED,
                created=outcome.created,
                updated=outcome.updated,
                unchanged=outcome.unchanged,
                errors=outcome.errors,
            )
            if outcome.errors:
                log.info("batch %s rejected: %d invalid record(s)", batch_id, len(outcome.errors))
                return result
            if not outcome.changed:
                log.info("batch %s changed nothing", batch_id)
                return result.model_copy(update={"status": BatchStatus.UNCHANGED})
            backup = self._commit(serialize_catalog(outcome.products), held)
        log.info(
            "batch %s applied: %d created, %d updated, %d unchanged",
            batch_id, outcome.created, outcome.updated, outcome.unchanged,
        )
        return result.model_copy(
            update={"status": BatchStatus.APPLIED, "backup": str(backup) if backup else None}
        )

    def restore(self, name: str) -> Path | None:
        """Put backup ``name`` back as the catalog, backing up the current version first (so it can be undone).

        Returns the backup taken of the version that was replaced.
        """
        backup = find_backup(self.path, self.backup_dir, name)
        data = backup.path.read_bytes()
        parse_catalog(data, backup.path)  # never restore a backup that is itself broken
        with self._locked() as held:
            remove_stale_temp_files(self.path)
            return self._commit(data, held)
