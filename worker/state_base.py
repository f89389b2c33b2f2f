"""The state file's base segments, and the one way a state file's problems are described. No I/O but reads.

A base segment (``.products.json.state.<sha256>``) holds the ledger and the field versions as of
a compaction (worker/state_journal.py); it is immutable, named by the sha256 of its bytes, and
checked against it whenever it is read. Each process keeps the last few it parsed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from catalog_core.errors import CatalogCorruptError
from schemas.state import BASE_SEGMENT
from worker.atomic import read_regular_file

# Far above any real state (100,000 ledger ids are ~17 MB); bounds the memory a hostile file takes.
STATE_MAX_BYTES = 512 * 1024 * 1024
ERRORS_SHOWN = 3


def base_segment_path(state_file: Path, sha256: str) -> Path:
    """A base segment: a hidden sibling of the state file, named by the sha256 of its bytes."""
    return state_file.with_name(f".{state_file.name}.{sha256}")


# Base segments are immutable (named by their content): each process keeps the last few parsed.
_BASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
_BASES_KEPT = 2


def base_segment(state_file: Path, sha256: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copies of the base's ledger and versions (the journal is folded into them)."""
    if sha256 is None:
        return {}, {}
    if sha256 not in _BASES:
        path = base_segment_path(state_file, sha256)
        read = read_regular_file(path, lambda reason: unreadable(
            state_file, f"its base segment {path.name} is {reason}"), limit=STATE_MAX_BYTES)
        if read is None:
            raise unreadable(state_file, f"its base segment {path.name} is missing")
        if hashlib.sha256(read[0]).hexdigest() != sha256:
            raise unreadable(state_file, f"its base segment {path.name} does not match its sha256")
        try:
            segment = BASE_SEGMENT.validate_json(read[0])
        except ValidationError as exc:
            raise unreadable(state_file, f"base segment {path.name}: {describe(exc)}") from None
        while len(_BASES) >= _BASES_KEPT:
            del _BASES[next(iter(_BASES))]
        _BASES[sha256] = (dict(segment["ledger"]), dict(segment["versions"]))
    ledger, versions = _BASES[sha256]
    return dict(ledger), dict(versions)


def remember_base(sha256: str, ledger: dict[str, Any], versions: dict[str, Any]) -> None:
    """A base segment this process just wrote: no need to read it back. Copies are kept."""
    while len(_BASES) >= _BASES_KEPT:
        del _BASES[next(iter(_BASES))]
    _BASES[sha256] = (dict(ledger), dict(versions))


def describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    described = []
    for error in errors[:ERRORS_SHOWN]:
        loc = error["loc"]
        if loc[:1] in ((1,), (2,), ("1",), ("2",)):
            loc = loc[1:]  # the format's tag, which pydantic puts first: not a field
        where = ".".join(_printable(part) for part in loc)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found") or loc[:1] == ("format",):
            shown = error.get("input", {}).get("format") if isinstance(error.get("input"), dict) else None
            described.append(f"unknown state format {str(shown)[:20]!r}")
        else:
            described.append(f"{where}: {error['msg']}" if where else error["msg"])
    more = f" (and {len(errors) - ERRORS_SHOWN} more)" if len(errors) > ERRORS_SHOWN else ""
    return "; ".join(described) + more


def _printable(part: str | int) -> str:
    """A key from the file, as it can be shown on a terminal: escaped if need be, and short."""
    text = str(part)
    return text[:80] if text.isprintable() else repr(text[:80])


def unreadable(source: Path, details: str) -> CatalogCorruptError:
    return CatalogCorruptError(
        f"{source}: the catalog's state file is unreadable ({details}); move it aside to rebuild it from "
        "the catalog (the ledger of applied batches and the field versions are then lost)"
    )
