"""Committing catalog and state together: steps 5-10 of "One write" in docs/commit-protocol.md
(which has the crash-point table; recovery from a crash between any two of them, step 1, is
worker/recovery.py):
5. write the new catalog to a temp file (when the catalog changes) and start its fsync, which
   runs beside step 6 and ends before step 7;
6. write the new state to a temp file and fsync it; it carries the catalog's digest
   (worker/catalog_digest.py: the writer computed it from its entries, not from the file), identity
   and the token of the catalog temp file (its name is ``.<catalog>.<token>.tmp``; the state
   names no file, so a hand-edited state cannot point recovery at any other file). When its
   journal is full, a new base segment is written first (worker/state_journal.py);
7. check the lock and the fence; any failure aborts here, temps removed;
8. hard-link the current state as ``.state.prev``;
9. rename the state temp over the state file and fsync the folder: the commit point (a first
   commit, which had no state to keep at step 8, then links its state as ``.state.prev``);
10. rename the catalog temp over the catalog (no folder fsync: a power loss that undoes this
    rename is the crash after step 9, rolled forward; the next commit's folder fsync covers it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

from catalog_core.errors import CommitError, FencedError
from worker.atomic import TEMP_SUFFIX, discard, fsync_file, sync_folder_or_warn, temp_prefix, write_temp
from worker.catalog_digest import digest_of
from worker.catalog_file import FileSeen, seen_now
from worker.state import CatalogState, FileIdentity, current_identity, previous_state_path, state_path
from worker.state_journal import LedgerWindow, collect_bases, encode_record

log = logging.getLogger(__name__)


def _link_previous(state_file: Path, previous: Path) -> bool:
    """Step 8: keep the state being replaced, for a roll back (a hard link costs nothing); whether
    there was one."""
    if not state_file.exists():
        return False
    staging = previous.with_name(previous.name + ".new")
    with suppress(FileNotFoundError):
        staging.unlink()
    os.link(state_file, staging)
    os.replace(staging, previous)
    with suppress(FileNotFoundError):
        staging.unlink()  # still there when ``previous`` already was this file (the first commit's link)
    return True


def _mark_first_commit(state_file: Path, previous: Path) -> None:
    """Step 9, a catalog's first commit: the new state is linked as ``.state.prev`` too, so that a
    state file deleted after it is seen to have existed (``had_state``) and refused, not started
    anew; ``mv`` of it back is then the very state. Linked only past the commit point: a first
    commit that aborts leaves no trace. Best effort (a missing link only leaves that check blind)."""
    try:
        os.link(state_file, previous)
    except OSError as exc:
        if not isinstance(exc, FileExistsError):
            log.warning("%s: could not link the first state as %s (%s); were the state deleted before the "
                        "next commit, writers could not tell it ever existed", state_file, previous.name, exc)


class Committed(NamedTuple):
    """What a writer needs to trust its copies next time: the identity of the files it put in place."""

    state_identity: FileIdentity | None  # None: not sure it is ours (someone replaced it at once)
    catalog_sha256: str | None
    catalog_seen: FileSeen | None = None  # the catalog it renamed into place (None: none, or not sure)


def _catalog_temp(catalog: Path, data: Sequence[bytes | memoryview], helper: ThreadPoolExecutor
                  ) -> tuple[Path, list[int], Future[None]]:
    """Step 5: the catalog temp file, its identity (inode, size, mtime), which a rename keeps, and
    its fsync, left running beside the state's write and fsync (step 6): the two fsyncs overlap."""
    temp = write_temp(catalog, data, sync=False)
    status = _stat_own_temp(temp)
    return temp, [status.st_ino, status.st_size, status.st_mtime_ns], helper.submit(fsync_file, temp)


def _stat_own_temp(temp: Path) -> os.stat_result:
    """A temp file we just wrote; gone only if the next writer removed it (step 1): we lost the lock."""
    try:
        return os.stat(temp)
    except FileNotFoundError:
        raise FencedError(f"{temp.name} was removed by another writer: this one lost the lock while paused; "
                          "starting over") from None


def commit(catalog: Path, new_catalog: bytes | Sequence[bytes | memoryview] | None, state: CatalogState,
           before_commit: Callable[[], None], window: LedgerWindow | None = None,
           catalog_digest: str | None = None) -> Committed:
    """Write ``state`` (and ``new_catalog``, the new file's parts, when given) as one atomic change.

    ``catalog_digest``: the new catalog's digest, when the caller knows it (``CatalogImage.digest``);
    else it is computed from the bytes."""
    if isinstance(new_catalog, bytes):
        new_catalog = [new_catalog]
    if new_catalog is not None and catalog_digest is None:
        catalog_digest = digest_of(b"".join(new_catalog))
    state_file, previous = state_path(catalog), previous_state_path(catalog)
    catalog_temp = state_temp = None
    try:
        with ThreadPoolExecutor(max_workers=1) as helper:
            synced = None
            if new_catalog is not None:
                state.catalog_sha256 = catalog_digest
                catalog_temp, state.catalog_file, synced = _catalog_temp(catalog, new_catalog, helper)
            state.pending_token = _temp_token(catalog, catalog_temp)
            state_temp = write_temp(state_file, encode_record(catalog, state, window or LedgerWindow()))
            if synced is not None:
                synced.result()  # both temp files durable before anything is renamed
        state_inode = _stat_own_temp(state_temp).st_ino
        before_commit()
        first = not _link_previous(state_file, previous)
        os.replace(state_temp, state_file)
    except BaseException as exc:
        discard(catalog_temp, state_temp)
        if isinstance(exc, OSError):
            raise CommitError(f"{catalog}: could not commit ({exc}); the previous version is intact") from exc
        raise
    # The state rename must be durable before the catalog's: recovery rolls forward from it.
    sync_folder_or_warn(catalog.parent)
    if first:
        _mark_first_commit(state_file, previous)
    # The state file's identity now (a rename changes its ctime), if it is still the one we renamed.
    identity = current_identity(state_file)
    committed = Committed(identity if identity is not None and identity.inode == state_inode else None,
                          state.catalog_sha256)
    if catalog_temp is not None:
        try:
            os.replace(catalog_temp, catalog)
        except OSError as exc:
            # Past the commit point the batch is applied: the next writer's recovery rolls the
            # catalog forward (or already did, and took the temp file). Never a failure.
            log.warning("%s: committed; the catalog rename is left to the next writer's recovery (%s)", catalog, exc)
            return committed._replace(state_identity=None)
        # No folder fsync here: the state's rename is durable (above), and a power loss that
        # undoes this rename leaves "new state, old catalog" with the temp file in place, which
        # recovery rolls forward (crash table, "power loss after 10"). The next commit's folder
        # fsync makes this rename durable too.
        # Its ctime now (a rename sets it), if it is still the file we renamed: the next write
        # trusts its copy only while the file is exactly this (``_agreeing_catalog``).
        seen = seen_now(catalog)
        if seen is not None and state.catalog_file is not None and seen[0] == state.catalog_file[0]:
            committed = committed._replace(catalog_seen=seen)
    for removed in collect_bases(catalog, state):
        log.debug("removed %s, a state segment no longer named", removed.name)
    return committed


def _temp_token(catalog: Path, temp: Path | None) -> str | None:
    """The random part of a catalog temp file's name: all the state keeps of it."""
    return None if temp is None else temp.name[len(temp_prefix(catalog)):-len(TEMP_SUFFIX)]
