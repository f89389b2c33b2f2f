"""The catalog store: every write to the catalog goes through here. No Celery inside.

A write: take the lock, recover from any interrupted commit (worker/recovery.py), take a fencing
token, read the state and the catalog (only now, so they are the latest), compute the outcome,
then commit catalog and state together (worker/commit.py), with a backup of the replaced catalog.

Exactly-once effects on top of at-least-once delivery:
- a batch id already in the state's ledger is not applied again: the result is ``duplicate``
  with the original outcome;
- fields last written by a batch with a higher sequence are skipped (``superseded``), so the
  catalog does not depend on the order in which batches ran;
- a writer whose fencing token is not above the last committed one does not commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import redis

from catalog_core.errors import (
    BatchTooLargeError,
    CatalogError,
    FencedError,
    LockLostError,
)
from catalog_core.redis_client import connect
from catalog_core.sequence import (
    fence_and_abandoned, fence_key, issued_ceiling, next_sequence,
)
from catalog_core.settings import Settings
from schemas import BatchResult, BatchStatus
from schemas.batch import digest_of, records_json
from worker.atomic import release_cached_pages
from worker.backup_policy import BackupPolicy
from worker.backups import CapWatch, backup_target, find_backup, link_backup, read_backup, take_backup
from worker.batch_apply import GroupMerge
from worker.catalog_image import CatalogImage
from worker.collector import collector_paused
from worker.recovery import Recovered, recover_for_write
from worker.lock import HeldLock, catalog_lock
from worker.outbox import publish_pending
from worker.state import CatalogState, current_identity, state_path
from worker.state_journal import LedgerWindow
from worker.write_attempt import (
    AsWritten, BatchRequest, CommitStats, Outcome, Planned, WriteAttempt,
)

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 3


class CatalogStore:
    """Applies batches to, and restores backups of, one catalog file under the Redis lock.

    Between writes it keeps the catalog and the state as it last committed or read them
    (``remember``): a write reads a file again only if its identity changed since.
    """

    def __init__(self, settings: Settings, client_factory: Callable[[str], redis.Redis] = connect) -> None:
        self.settings = settings
        self.path = settings.catalog_path
        self.backup_dir = settings.backup_path
        self.window = LedgerWindow(settings.ledger_days, settings.ledger_max_ids)
        self._client_factory = client_factory
        self._client: redis.Redis | None = None
        self._known: Recovered | None = None
        self._ceiling_seen = 0  # the highest sequence the counter was seen to have issued
        self.events_accepted_through = 0  # the fence of our last commit whose events Redis took (outbox)
        self._cap = CapWatch()
        # Called after each durable write of apply_group (the worker records metrics with it);
        # it must not raise: the batches are committed.
        self.on_commit: Callable[[CommitStats], None] | None = None

    @property
    def redis(self) -> redis.Redis:
        if self._client is None:
            self._client = self._client_factory(self.settings.redis_url)
        return self._client

    def sequence_issued(self, sequence: int) -> tuple[bool, int]:
        """Whether the counter has handed ``sequence`` out, and the highest it has (so far as known).

        The counter only grows (a lost one starts a higher epoch), so a sequence at or below a
        ceiling once read was issued: Redis is asked only about higher ones, not for every batch.
        """
        if sequence <= self._ceiling_seen:
            return True, self._ceiling_seen
        ceiling = issued_ceiling(self.redis, self.settings.queue)
        self._ceiling_seen = max(self._ceiling_seen, ceiling)
        return sequence <= ceiling, ceiling

    def hold_backup_cap(self, added: Path) -> None:
        """After a commit that added backup ``added``: the oldest go if the folder passed its byte cap,
        so a burst of commits cannot fill the disk between two rotations. Never fails the commit."""
        try:
            self._cap.hold(self.path, self.backup_dir, BackupPolicy.from_settings(self.settings), added)
        except (CatalogError, OSError) as exc:
            log.warning("could not hold the backups under their byte cap: %s", exc)

    def remember(self, recovered: Recovered | None) -> None:
        self._known = recovered if recovered is not None and recovered.state_identity is not None else None

    def knows_latest(self) -> bool:
        """Whether what this process keeps is the last commit (nobody committed since ours): one stat."""
        try:
            return self._known is not None and current_identity(state_path(self.path)) == self._known.state_identity
        except OSError:
            return False

    def _locked(self, wait: bool = True) -> AbstractContextManager[HeldLock]:
        return catalog_lock(self.redis, self.path, self.settings.lock_expire, self.settings.lock_timeout, wait)

    def _begin(self, held: HeldLock, missing_ok: bool = False) -> WriteAttempt:
        """Steps 1-2 of a write. ``missing_ok``: a catalog the state records may be gone (a restore puts one back)."""
        recovered = recover_for_write(self.path, self._known, missing_ok)
        self.remember(recovered if recovered.action is None else None)
        # The fence key comes from the same read of the catalog id as the lock itself.
        fence, abandoned = fence_and_abandoned(self.redis, fence_key(held.name), recovered.state.fence,
                                               self.settings.queue)
        write = WriteAttempt(self, held, recovered, fence)
        publish_pending(self.redis, self.settings.queue, self.settings.events_maxlen, write.state,
                        self.events_accepted_through)
        write.abandoned = abandoned
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

    def request(self, records: Sequence[Any], batch_id: str, sequence: int | None = None,
                final_attempt: bool = True, source: str = "api") -> BatchRequest:
        """A batch checked for size, serialized and hashed once, outside the lock."""
        return BatchRequest(records, batch_id, sequence, digest_of(self.check_size(records)), final_attempt, source)

    def apply(self, records: Sequence[Any], batch_id: str, sequence: int | None = None,
              final_attempt: bool = True, source: str = "api") -> BatchResult:
        """Merge-upsert ``records`` as one all-or-nothing batch and report what happened.

        ``sequence`` is the batch's submission order (taken now when None). When the batch
        only fails because it patches products that lower-sequence, still pending batches may
        create, and this is not the ``final_attempt``, ``ProductNotYetCreatedError`` asks for
        a retry instead of a rejection.
        """
        outcome = self.apply_group([self.request(records, batch_id, sequence, final_attempt, source)])[0]
        if isinstance(outcome, CatalogError):
            raise outcome
        return outcome

    def apply_planned(self, planner: Callable[[CatalogState], Planned], batch_id: str,
                      source: str) -> BatchResult:
        """Apply the records ``planner`` decides under the lock, from the state of that moment
        (a revert: which fields a later batch wrote is only known then). One batch like any other."""
        outcome = self.apply_group([BatchRequest([], batch_id, None, "", True, source, planner)])[0]
        if isinstance(outcome, CatalogError):
            raise outcome
        return outcome

    def apply_group(self, requests: Sequence[BatchRequest],
                    gather: Callable[[], Sequence[BatchRequest]] | None = None,
                    deliver: Callable[[list[Outcome]], None] | None = None,
                    wait_for_lock: bool = True) -> list[Outcome]:
        """Apply several batches in one commit: one lock, one catalog write, one backup, one state write.

        Each batch is still all or nothing and gets its own outcome, in ``requests``' order:
        they are applied in sequence order (those without one last, in the order given), each
        against the catalog its predecessors in the group left. A rejected batch changes
        nothing; a batch that must be retried (``ProductNotYetCreatedError``) gets that error
        and no trace in the commit. An error of the commit itself (Redis, the disk, the lock)
        is raised for the whole group: nothing of it was committed.

        ``gather``, called once the lock is held and once more after the merge, returns more
        batches to carry (those that came while this writer waited for the lock, or merged);
        their outcomes follow ``requests``' in the list. The second call's batches are applied
        after the first's, in sequence order among themselves.
        ``deliver`` gets the outcomes once the commit is durable, before the lock is released
        (a staged batch's answer: worker/group_commit.py). ``wait_for_lock=False``: only if the
        lock is free now, else ``LockBusyError``.
        """
        carried = list(requests)
        outcomes: list[Outcome] = self._with_retries(
            lambda: self._apply_group_once(carried, gather, deliver, wait_for_lock))
        return outcomes

    def _apply_group_once(self, requests: list[BatchRequest], gather: Callable[[], Sequence[BatchRequest]] | None,
                          deliver: Callable[[list[Outcome]], None] | None, wait_for_lock: bool) -> list[Outcome]:
        started = time.perf_counter()
        with ExitStack() as after_release, self._locked(wait_for_lock) as held:
            # Paused once the lock is held, resumed once it is released (worker/collector.py: why):
            # the collection it owes runs with the lock free, not inside its release.
            after_release.enter_context(collector_paused())
            locked = time.perf_counter()
            if gather is not None:
                requests.extend(gather())  # kept if this attempt starts over
            if not requests:
                return []  # nothing came (a holder that drains found the staged batches taken)
            write = self._begin(held)
            # The version every batch of this commit replaces: named now so the ledger can name it,
            # linked only if the catalog changes (a write that changes nothing never touches the file).
            backup = backup_target(self.path, self.backup_dir) if write.image.sha256 is not None else None
            outcomes: dict[int, Outcome] = {}
            merging = GroupMerge(write, backup, self._take_sequence, self.check_size,
                                 bool(self.settings.events_maxlen))
            image = merging.merge(write.image, requests, 0, outcomes)
            if gather is not None:
                # Those that came while these merged join this commit too (once, the group's
                # room allowing): a burst's last batches waited for the whole of it, then for
                # a commit of their own. In any order: the merge does not depend on it.
                merged = len(requests)
                requests.extend(gather())
                image = merging.merge(image, requests, merged, outcomes)
            changed = image is not write.image
            if changed and backup is not None:
                link_backup(self.path, backup)
            else:
                backup = None
            write.commit(image if changed else None, backup)
            results = [outcomes[i] for i in range(len(requests))]
            if deliver is not None:
                deliver(results)
        release_cached_pages(backup)  # the version replaced: its pages are for the next write (the lock is free)
        if self.on_commit is not None:
            self.on_commit(CommitStats(len(requests), locked - started, time.perf_counter() - locked, time.time(),
                                       tuple(outcome for outcome in results if isinstance(outcome, BatchResult))))
        for outcome in results:
            if isinstance(outcome, BatchResult) and outcome.status != BatchStatus.DUPLICATE:
                log.info("batch %s (sequence %s) %s: %d created, %d updated, %d unchanged, %d superseded field(s)",
                         outcome.batch_id, outcome.sequence, outcome.status.value, outcome.created, outcome.updated,
                         outcome.unchanged, len(outcome.superseded))
        return results

    def _take_sequence(self, floor: int) -> int:
        """A sequence for a batch that came without one, taken under the lock."""
        return next_sequence(self.redis, self.settings.queue, floor=floor)

    def restore(self, name: str) -> Path | None:
        """Put backup ``name`` back as the catalog, backing up the current version first (so it can be undone).

        The ledger and field versions are kept. Returns the backup taken of the replaced version.
        """
        backup = find_backup(self.path, self.backup_dir, name)
        data = read_backup(backup, self.settings.max_file_bytes)  # by descriptor, bounded even if compressed
        restored_image = CatalogImage.from_file_bytes(data, backup.path)  # never restore a broken backup

        def attempt() -> Path | None:
            with self._locked() as held:
                write = self._begin(held, missing_ok=True)
                taken = take_backup(self.path, self.backup_dir) if write.image.sha256 is not None else None
                write.commit(AsWritten(restored_image, data), taken)
                return taken

        restored: Path | None = self._with_retries(attempt)
        release_cached_pages(restored)  # as after a commit, the lock free
        return restored
