"""The catalog's id: names its lock, whatever path, mount point or host reaches the file.

``products.json.id`` holds a uuid4, created once by the first writer. Hosts that mount the
catalog's folder at different paths all read the same id, so they take the same lock. The id
is written to a temp file, fsynced, then hard-linked into place: ``link`` fails if the name
exists, so of writers racing to create it exactly one wins, and a reader sees either no id
or a whole one, never a partial file.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import uuid
from contextlib import suppress
from pathlib import Path

from catalog_core.errors import CatalogCorruptError, CommitError
from worker.atomic import fsync_dir, read_regular_file

log = logging.getLogger(__name__)

ID_SUFFIX = ".id"
ID_MAX_BYTES = 64
_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
# A host on which the folder cannot take a new file cannot commit either (a commit creates temp
# files and hard links there): a different lock name on that host cannot lose an update.
CANNOT_CREATE_HERE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})


def catalog_id_path(catalog: Path) -> Path:
    return catalog.with_name(catalog.name + ID_SUFFIX)


def read_catalog_id(catalog: Path) -> str | None:
    """The catalog's id; None when it has none yet. A file that is not an id is an error."""
    path = catalog_id_path(catalog)
    not_an_id = CatalogCorruptError(
        f"{path}: not a catalog id (a uuid4 on one line). It names the catalog's lock on every host: "
        "stop every writer, then delete it and the next writer creates a new one")
    read = read_regular_file(path, lambda reason: not_an_id if reason == "not a regular file" or
                             reason.startswith("over") else
                             CatalogCorruptError(f"{path}: cannot read the catalog id: {reason}"), limit=ID_MAX_BYTES)
    if read is None:
        return None
    data = read[0]
    text = data.decode("ascii", errors="replace").strip()
    if not _ID_PATTERN.match(text):
        raise not_an_id
    return text


def ensure_catalog_id(catalog: Path) -> str | None:
    """The catalog's id, created if missing; None when this folder cannot take a new file."""
    existing = read_catalog_id(catalog)
    if existing is not None:
        return existing
    path = catalog_id_path(catalog)
    try:
        _create(path)
    except OSError as exc:
        if exc.errno in CANNOT_CREATE_HERE:
            log.warning("cannot create %s (%s): the lock is named after the path instead", path, exc.strerror)
            return None
        raise CommitError(f"{path}: cannot create the catalog id ({exc.strerror})") from exc
    created = read_catalog_id(catalog)
    if created is None:
        raise CommitError(f"{path}: the catalog id vanished right after it was created")
    return created


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            os.write(fd, f"{uuid.uuid4()}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        with suppress(FileExistsError):  # another writer created it first: theirs is the id
            os.link(temp, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(temp)
    fsync_dir(path.parent)
