"""The catalog's digest: what the state records of the catalog file it describes. Pure: no I/O.

Why not the sha256 of the whole file: a commit would hash every byte of the catalog again,
however few products changed: at 10,000 products 13 MB, 11-17 ms of CPU a commit, half of
what a commit of small batches costs, and 110 ms at 100,000. A file in our layout
(``worker/catalog_layout.py``) is exactly ``[\\n``, its entries joined by ``,\\n``, then
``\\n]\\n``, so its entries determine it. Its digest is the sha256 of the sha256 of each entry, in
order (a hash list, as Dropbox's content hash is of its blocks): as strong as a sha256 of the
file, and a writer keeps each entry's digest, so a commit hashes only the entries it changed and
the list of digests (32 bytes a product).

Any other file (a hand edit in another layout, a file that is not a catalog) has the plain
sha256 of its bytes as digest. ``digest_of`` is one function of a file's bytes either way, and
``describes`` also accepts the plain sha256 that states written before the hash list record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from worker.catalog_layout import cut, entry_end

DIGEST_BYTES = 32  # one entry's sha256, in the list
# Prefixed to the list before it is hashed: a hash list never equals a plain sha256 of a file
# that happens to hold those bytes.
_DOMAIN = b"catalog-ingest entries sha256 v1\n"


def entry_digest(entry: bytes | memoryview) -> bytes:
    return hashlib.sha256(entry).digest()


def entry_digests(entries: Iterable[bytes | memoryview]) -> bytes:
    """Each entry's sha256, in order, as one buffer (``DIGEST_BYTES`` each)."""
    return b"".join(map(entry_digest, entries))


def digest_of_list(digests: bytes) -> str:
    """The digest of a file in our layout, from its entries' ``entry_digests``."""
    return hashlib.sha256(_DOMAIN + digests).hexdigest()


def digest_of(data: bytes) -> str:
    """The digest of a catalog file's bytes: the hash list when it is in our layout, else its sha256."""
    layout = cut(data)
    if layout is None:
        return hashlib.sha256(data).hexdigest()
    return digest_of_list(FileDigests(data, layout.starts).all())


def describes(recorded: str | None, data: bytes, digest: str | None = None) -> bool:
    """Whether a state's recorded digest is that of ``data``: its digest (``digest``, when the
    caller already has it), or (a state written before the hash list, by this program's earlier
    versions) its plain sha256."""
    if recorded is None:
        return False
    return recorded == (digest or digest_of(data)) or recorded == hashlib.sha256(data).hexdigest()


class FileDigests:
    """The entry digests of one file in our layout, computed on first use (or carried over from the
    image it was written for), and shared by every image laid over that file; and the digests of
    the new entries laid over it, by index, each kept with its entry (a digest is used only for
    the very entry it was computed from, so images of the same file may share them)."""

    __slots__ = ("_data", "_starts", "_list", "fresh")

    def __init__(self, data: bytes, starts: list[int], known: bytes | None = None) -> None:
        self._data, self._starts, self._list = data, starts, known
        self.fresh: dict[int, tuple[bytes, bytes]] = {}

    @property
    def computed(self) -> bool:
        return self._list is not None

    def all(self) -> bytes:
        if self._list is None:
            data, starts, view = self._data, self._starts, memoryview(self._data)
            self._list = entry_digests(view[start:entry_end(data, starts, index)] for index, start in enumerate(starts))
        return self._list

    def run(self, first: int, stop: int) -> memoryview:
        """The digests of the file's entries ``first`` to ``stop - 1``."""
        return memoryview(self.all())[first * DIGEST_BYTES:stop * DIGEST_BYTES]

    def of_new(self, index: int, entry: bytes) -> bytes:
        """The digest of ``entry``, laid at ``index``, computed once."""
        known = self.fresh.get(index)
        if known is not None and known[0] is entry:
            return known[1]
        digest = entry_digest(entry)
        self.fresh[index] = (entry, digest)
        return digest

    def at(self, index: int, new_entry: bytes | None) -> bytes | memoryview:
        """The digest at ``index`` of an image of this file: ``new_entry``'s, or the file's entry's."""
        return self.run(index, index + 1) if new_entry is None else self.of_new(index, new_entry)


def patched_list(derived_from: bytes, changed: Iterable[int], digest_at: Callable[[int], bytes | memoryview],
                 count: int) -> bytes | None:
    """The digest list ``derived_from`` with the digest at each index of ``changed`` set anew
    (indices past its end extend it, in order); None unless that makes a list of ``count``."""
    listed = bytearray(derived_from)
    for index in sorted(changed):  # in order: appended products extend the list one by one
        at = index * DIGEST_BYTES
        if at > len(listed):
            return None
        listed[at:at + DIGEST_BYTES] = digest_at(index)
    return bytes(listed) if len(listed) == count * DIGEST_BYTES else None
