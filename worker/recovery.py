"""Recovery, step 1 of "One write" in docs/commit-protocol.md: before reading anything a writer
brings catalog and state into agreement, whatever step of a commit (worker/commit.py, steps 5-10)
a crash stopped.

The state records the digest of the catalog it belongs to and the token of the catalog temp
file its commit wrote. Recovery compares the catalog's digest with the state's and:
- they agree: nothing to do (the usual case; a writer that knows both files skips the read);
- the temp file with the state's token is there and has that digest: **roll forward** (the
  crash came between the state's rename and the catalog's);
- the catalog has the digest ``.state.prev`` records: **roll back** to that state (the new
  catalog of an interrupted commit was lost);
- the catalog file is missing while the state records one: **refused** (a restore proceeds);
- otherwise the catalog was changed by hand: kept and **adopted**.
A missing state file with ``.state.prev`` beside it was deleted, not never written: **refused**.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import NamedTuple

from catalog_core.errors import CatalogCorruptError
from worker.atomic import TEMP_SUFFIX, atomic_write, remove_stale_temp_files, sync_folder_or_warn, temp_prefix
from worker.catalog_digest import describes
from worker.catalog_file import FileSeen, read_catalog_file, seen_now
from worker.catalog_image import CatalogImage
from worker.state import (
    CatalogState,
    FileIdentity,
    current_identity,
    had_state,
    previous_state_path,
    read_state,
    read_state_file,
    serialize_state,
    state_path,
)

log = logging.getLogger(__name__)


class Recovered(NamedTuple):
    """Catalog and state in agreement, as a writer starts from them (and, kept, its cache)."""

    state: CatalogState
    image: CatalogImage  # the catalog as recovered, parsed once
    action: str | None  # None (they agreed), or a sentence for the log
    state_identity: FileIdentity | None  # of the state file exactly as read; None when absent
    catalog_seen: FileSeen | None = None  # the catalog file ``image`` is of, as read or renamed (ctime included)


def recover(catalog: Path) -> tuple[CatalogState, str | None]:
    """Bring catalog and state into agreement. Call only while holding the write lock.

    Returns the state and what was done: None (they agreed), or a sentence for the log.
    """
    recovered = recover_for_write(catalog)
    return recovered.state, recovered.action


def recover_for_write(catalog: Path, known: Recovered | None = None, missing_ok: bool = False) -> Recovered:
    """``recover``, also returning the catalog parsed and the identity of the state file exactly as read.

    ``known`` is what this process had when it last wrote (or read): files whose identity has
    not changed since are not read again. Anything else (another writer, ``catalog apply``, a
    restore, a hand edit) changes the identity, and the file is read. A writer compares the
    state identity with ``worker.state.current_identity`` right before its commit: any
    difference means someone committed since the read.

    A catalog file that is gone while the state records one is a ``CatalogCorruptError``
    (nothing is written: adopting "no catalog" would make the next commit a catalog of its
    batches alone), but for ``missing_ok``: a restore, which puts one back.
    """
    state_file = state_path(catalog)
    # First, before reading anything, the state temp files of other writers: one that lost the
    # lock while paused between its check and its commit rename then can no longer commit, so
    # what we read next cannot change under us. (Recovery never needs a state temp file.)
    for stale in remove_stale_temp_files(state_file):
        log.warning("removed %s, left by a writer that crashed or lost the lock", stale)
    identity = current_identity(state_file)
    if known is not None and identity is not None and identity == known.state_identity:
        state: CatalogState | None = known.state
    else:
        state, identity = read_state_file(state_file)
        if state is None:
            _refuse_a_deleted_state(catalog)
    image, action, seen = _agreeing_catalog(catalog, state, known.image if known else None,
                                            known.catalog_seen if known else None, missing_ok)
    if action is not None:
        state, identity = read_state_file(state_file)
    for stale in remove_stale_temp_files(catalog):  # after recovery, which may roll one forward
        log.warning("removed %s, left by a writer that crashed or lost the lock", stale)
    if action:
        log.warning("%s: %s", catalog, action)
    return Recovered(state or CatalogState(catalog_sha256=image.sha256), image, action, identity, seen)


def _refuse_a_deleted_state(catalog: Path) -> None:
    """No state file, but its previous version beside it: the state was deleted, not never written.

    A new one would forget which batches were applied (a redelivery applied again) and which
    sequence wrote each field (an older batch overwriting a newer one's): nothing is written."""
    state_file, previous = state_path(catalog), previous_state_path(catalog)
    if had_state(catalog):
        raise CatalogCorruptError(
            f"{state_file}: missing, but {previous.name} beside it shows that this catalog had one: it was "
            "deleted or moved. Nothing was written: a new state would forget which batches were applied (a "
            "redelivered batch would be applied again, an older one could overwrite newer fields). Put it "
            f"back; or go on from the state before the last commit, `mv {previous.name} {state_file.name}` "
            f"(that commit's batches then count as not seen yet); or, to start a new ledger on purpose, move "
            f"{previous.name} aside as well.")


def _agreeing_catalog(catalog: Path, state: CatalogState | None, known: CatalogImage | None,
                      seen: FileSeen | None, missing_ok: bool = False
                      ) -> tuple[CatalogImage, str | None, FileSeen | None]:
    """The catalog, parsed, once it agrees with ``state``; what recovery did (None: nothing); and
    the file as read (its identity from the descriptor the bytes came from).

    Fast path: the catalog file is the one the state committed (same inode, size and mtime,
    recorded at commit) and this process already has that version parsed (same sha256: also
    after another writer's commit that changed only the state), the file exactly as this
    process last saw it (``seen``, ctime included). Next: the state's file, in our layout, cut
    into its entries. Otherwise it is read and hashed.
    """
    now = seen_now(catalog)
    # The file this process last saw, its inode, size and mtime unchanged, yet changed since: an
    # edit in place that put its mtime back (`touch -d`), which only the ctime shows. Nothing
    # recorded of it is trusted, not even the state's identity: it is hashed like any hand edit.
    edited_in_place = seen is not None and now is not None and now[:3] == seen[:3] and now != seen
    current: bytes | None = None
    read: FileSeen | None = None
    was_read = False
    if state is not None and now is not None and list(now[:3]) == state.catalog_file and not edited_in_place:
        if known is not None and known.sha256 == state.catalog_sha256 and now == seen:
            return known, None, seen
        if state.catalog_own_layout:
            # The very file a writer of ours committed (another worker, most often): cut, not parsed.
            current, read = read_catalog_file(catalog)
            was_read = True
            if current is not None and read is not None and list(read[:3]) == state.catalog_file:
                image = None if known is None else CatalogImage.from_own_bytes_like(current, state.catalog_sha256,
                                                                                     known)
                image = image or CatalogImage.from_own_bytes(current, state.catalog_sha256)
                if image is not None:
                    return image, None, read
    if not was_read:  # the bytes read above serve the slow path too: a file is read once
        current, read = read_catalog_file(catalog)
    image = CatalogImage.from_file_bytes(current, catalog)
    if state is None:
        return image, None if current is None else "no state file yet: started one for the existing catalog", read
    if _agrees(state.catalog_sha256, current, image.sha256):
        # Verified by its bytes: the fast path can take it from now on.
        state.catalog_file = None if read is None else list(read[:3])
        return image, None, read
    action = _reconcile(catalog, state, current, image.sha256, missing_ok)
    current, read = read_catalog_file(catalog)
    return CatalogImage.from_file_bytes(current, catalog), action, read


def _agrees(recorded: str | None, current: bytes | None, digest: str | None) -> bool:
    """Whether a state's catalog digest is that of the catalog file ``current`` (None: absent)."""
    return recorded is None if current is None else describes(recorded, current, digest)


def _pending_catalog(catalog: Path, token: str | None) -> Path | None:
    """The catalog temp file a commit stopped before renaming: a fixed shape beside the catalog, a regular file."""
    if token is None:
        return None
    pending = catalog.with_name(f"{temp_prefix(catalog)}{token}{TEMP_SUFFIX}")
    try:
        return pending if stat.S_ISREG(os.lstat(pending).st_mode) else None
    except FileNotFoundError:
        return None


def _reconcile(catalog: Path, state: CatalogState, current: bytes | None, digest: str | None,
               missing_ok: bool = False) -> str:
    """``digest``: the digest of ``current`` (the catalog's bytes now), computed once by the caller."""
    state_file = state_path(catalog)
    pending = _pending_catalog(catalog, state.pending_token)
    if pending is not None and describes(state.catalog_sha256, pending.read_bytes()):
        os.replace(pending, catalog)
        sync_folder_or_warn(catalog.parent)
        return f"rolled forward: a commit had stopped between its two renames ({pending.name} put in place)"
    previous = read_state(previous_state_path(catalog))
    if previous is not None and _agrees(previous.catalog_sha256, current, digest):
        atomic_write(state_file, serialize_state(previous))
        return "rolled back to the previous state: the new catalog of an interrupted commit was lost"
    if current is None and not missing_ok:
        # Deleted (by mistake, by a script) or a folder that is not the one the writers wrote:
        # "no catalog" adopted, the next commit would be a catalog of its batches alone.
        raise CatalogCorruptError(
            f"{catalog}: the catalog file is missing, but its state file records one (fence {state.fence}); "
            "nothing was written. If it was deleted by mistake, put it back: `catalog backups list`, then "
            "`catalog backups restore NAME`. To start a new, empty catalog on purpose, move "
            f"{state_file.name} aside as well.")
    # Neither: the file was changed by hand (an edit, a copy). Keep it; it becomes the truth.
    state.catalog_sha256 = digest
    state.pending_token = None
    atomic_write(state_file, serialize_state(state))
    if current is None:
        return "the catalog file was missing (deleted outside catalog-ingest); the restore puts one back"
    return "the catalog was changed outside catalog-ingest; its current content is kept and adopted"
