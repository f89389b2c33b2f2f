"""Committing catalog and state together, and recovering from a crash between their renames.

The protocol, numbered as steps 5-10 of "One write" in docs/commit-protocol.md (which has the
crash-point table):
5. write the new catalog to a temp file and fsync it (when the catalog changes);
6. write the new state to a temp file and fsync it; it carries the catalog's sha256 and the
   token of the catalog temp file (its name is ``.<catalog>.<token>.tmp``; the state names
   no file, so a hand-edited state cannot point recovery at any other file);
7. check the lock and the fence, and take the backup; any failure aborts here, temps removed;
8. hard-link the current state as ``.state.prev``;
9. rename the state temp over the state file and fsync the folder: the commit point;
10. rename the catalog temp over the catalog and fsync the folder.
Recovery (step 1) compares the catalog's sha256 with the state's and rolls forward (the
catalog temp file with the state's token) or back (``.state.prev``) until they agree.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

from catalog_core.errors import CommitError
from worker.atomic import (
    TEMP_SUFFIX,
    atomic_write,
    discard,
    remove_stale_temp_files,
    sync_folder_or_warn,
    temp_prefix,
    write_temp,
)
from worker.catalog_file import read_catalog_bytes
from worker.state import (
    CatalogState,
    FileIdentity,
    previous_state_path,
    read_state,
    read_state_file,
    serialize_state,
    sha256_of,
    state_path,
)

log = logging.getLogger(__name__)


def _link_previous(state_file: Path, previous: Path) -> None:
    """Keep the state being replaced, for a roll back; a hard link costs nothing."""
    if not state_file.exists():
        return
    staging = previous.with_name(previous.name + ".new")
    with suppress(FileNotFoundError):
        staging.unlink()
    os.link(state_file, staging)
    os.replace(staging, previous)


def commit(catalog: Path, new_catalog: bytes | None, state: CatalogState,
           before_commit: Callable[[], None]) -> None:
    """Write ``state`` (and ``new_catalog``, when given) as one atomic change."""
    state_file, previous = state_path(catalog), previous_state_path(catalog)
    catalog_temp = state_temp = None
    try:
        if new_catalog is not None:
            catalog_temp = write_temp(catalog, new_catalog)
            state.catalog_sha256 = sha256_of(new_catalog)
        state.pending_token = _temp_token(catalog, catalog_temp)
        state_temp = write_temp(state_file, serialize_state(state))
        before_commit()
        _link_previous(state_file, previous)
        os.replace(state_temp, state_file)
    except BaseException as exc:
        discard(catalog_temp, state_temp)
        if isinstance(exc, OSError):
            raise CommitError(f"{catalog}: could not commit ({exc}); the previous version is intact") from exc
        raise
    # The state rename must be durable before the catalog's: recovery rolls forward from it.
    sync_folder_or_warn(catalog.parent)
    if catalog_temp is not None:
        try:
            os.replace(catalog_temp, catalog)
        except OSError as exc:
            # Past the commit point the batch is applied: the next writer's recovery rolls the
            # catalog forward (or already did, and took the temp file). Never a failure.
            log.warning("%s: committed; the catalog rename is left to the next writer's recovery (%s)", catalog, exc)
            return
        sync_folder_or_warn(catalog.parent)


class Recovered(NamedTuple):
    """Catalog and state in agreement, as a writer starts from them."""

    state: CatalogState
    catalog_bytes: bytes | None  # the catalog as recovered, so a writer reads the file once
    action: str | None  # None (they agreed), or a sentence for the log
    state_identity: FileIdentity | None  # of the state file exactly as read; None when absent


def recover(catalog: Path) -> tuple[CatalogState, str | None]:
    """Bring catalog and state into agreement. Call only while holding the write lock.

    Returns the state and what was done: None (they agreed), or a sentence for the log.
    """
    recovered = recover_for_write(catalog)
    return recovered.state, recovered.action


def recover_for_write(catalog: Path) -> Recovered:
    """``recover``, also returning the catalog's bytes (so a writer reads the file once) and the
    identity of the state file exactly as read.

    A writer compares it with ``worker.state.current_identity`` right before its commit: any
    difference means someone committed since the read.
    """
    state_file = state_path(catalog)
    # First, before reading anything, the state temp files of other writers: one that lost the
    # lock while paused between its check and its commit rename then can no longer commit, so
    # what we read next cannot change under us. (Recovery never needs a state temp file.)
    for stale in remove_stale_temp_files(state_file):
        log.warning("removed %s, left by a writer that crashed or lost the lock", stale)
    state, identity = read_state_file(state_file)
    current = read_catalog_bytes(catalog)
    current_sha = sha256_of(current)
    action = None
    if state is None:
        state = CatalogState(catalog_sha256=current_sha)
        if current is not None:
            action = "no state file yet: started one for the existing catalog"
    elif state.catalog_sha256 != current_sha:
        action = _reconcile(catalog, state, current_sha)
        reread, identity = read_state_file(state_file)
        state = reread or state
        current = read_catalog_bytes(catalog)
    for stale in remove_stale_temp_files(catalog):  # after recovery, which may roll one forward
        log.warning("removed %s, left by a writer that crashed or lost the lock", stale)
    if action:
        log.warning("%s: %s", catalog, action)
    return Recovered(state, current, action, identity)


def _temp_token(catalog: Path, temp: Path | None) -> str | None:
    """The random part of a catalog temp file's name: all the state keeps of it."""
    return None if temp is None else temp.name[len(temp_prefix(catalog)):-len(TEMP_SUFFIX)]


def _pending_catalog(catalog: Path, token: str | None) -> Path | None:
    """The catalog temp file a commit stopped before renaming: a fixed shape beside the catalog, a regular file."""
    if token is None:
        return None
    pending = catalog.with_name(f"{temp_prefix(catalog)}{token}{TEMP_SUFFIX}")
    try:
        return pending if stat.S_ISREG(os.lstat(pending).st_mode) else None
    except FileNotFoundError:
        return None


def _reconcile(catalog: Path, state: CatalogState, current_sha: str | None) -> str:
    state_file = state_path(catalog)
    pending = _pending_catalog(catalog, state.pending_token)
    if pending is not None and sha256_of(pending.read_bytes()) == state.catalog_sha256:
        os.replace(pending, catalog)
        sync_folder_or_warn(catalog.parent)
        return f"rolled forward: a commit had stopped between its two renames ({pending.name} put in place)"
    previous = read_state(previous_state_path(catalog))
    if previous is not None and previous.catalog_sha256 == current_sha:
        atomic_write(state_file, serialize_state(previous))
        return "rolled back to the previous state: the new catalog of an interrupted commit was lost"
    # Neither: the file was changed by hand (an edit, a copy). Keep it; it becomes the truth.
    state.catalog_sha256 = current_sha
    state.pending_token = None
    atomic_write(state_file, serialize_state(state))
    return "the catalog was changed outside catalog-ingest; its current content is kept and adopted"
