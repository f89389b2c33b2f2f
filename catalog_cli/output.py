"""How results are shown: rich text for people, JSON Lines for programs."""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

from catalog_core.errors import EXIT_OK, EXIT_REJECTED
from producers.files import BatchFile
from schemas import BatchResult, BatchStatus, RecordError

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
# Characters that move the cursor, recolour or clear the terminal, reorder text (bidi) or hide
# (zero-width): in user data they are shown as escapes, never sent to the terminal as they are.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})

STATUS_STYLE = {
    BatchStatus.APPLIED: "green",
    BatchStatus.UNCHANGED: "cyan",
    BatchStatus.REJECTED: "red",
    BatchStatus.DUPLICATE: "magenta",
}
SUPERSEDED_SHOWN = 10


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object, keep_newlines: bool = False) -> str:
    """User data (ids, fields, file names, messages quoting them) safe for a terminal.

    The one place that decides what reaches the terminal: control, format, bidi and separator
    characters become visible escapes (``\\x1b``, ``\\u202e``). ``keep_newlines`` keeps the
    line breaks of a multi-line message of ours; a newline inside user data is escaped where
    that data is printed on its own.
    """
    value = str(text)
    if keep_newlines:
        return "\n".join(printable(line) for line in value.split("\n"))
    if value.isascii() and value.isprintable():
        return value
    return "".join(_escaped(c) if unicodedata.category(c) in UNSAFE_CATEGORIES else c for c in value)


def show(text: object, keep_newlines: bool = False) -> str:
    """``printable`` text, escaped for rich markup too, ready to put inside a markup string."""
    return escape(printable(text, keep_newlines))


def print_json_line(payload: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(payload) + b"\n")
    sys.stdout.flush()


def describe_error(error: RecordError, batch: BatchFile | None) -> str:
    """``file, line 3, product X, field pricing[0].price_aed: message``."""
    where = []
    if batch is not None:
        where.append(printable(batch.source))
        line = batch.line_of(error.index)
        if line is not None:
            where.append(f"line {line}")
    if error.index is not None:
        where.append(f"record {error.index + 1}")
    if error.product_id:
        where.append(f"product {printable(error.product_id)}")
    if error.loc:
        where.append(f"field {printable(error.loc)}")
    msg = printable(error.msg)
    return f"{', '.join(where)}: {msg}" if where else msg


def result_payload(result: BatchResult, batch: BatchFile | None) -> dict[str, Any]:
    payload = result.model_dump(mode="json")
    if batch is not None:
        payload["source"] = batch.source
        for error in payload["errors"]:
            error["line"] = batch.line_of(error["index"])
    return payload


def print_result(result: BatchResult, batch: BatchFile | None) -> None:
    style = STATUS_STYLE.get(result.status, "yellow")
    name = f"{show(batch.source)}: " if batch else ""
    counts = f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged"
    if result.status == BatchStatus.REJECTED:
        counts = f"{len(result.errors)} problem(s); nothing was written"
    if result.status == BatchStatus.DUPLICATE and result.original is not None:
        first = result.original
        counts = (f"already {first.status.value} as sequence {first.sequence} ({first.created} created, "
                  f"{first.updated} updated, {first.unchanged} unchanged); nothing changed now")
        if result.content_matches is False:
            counts += ("\n  [red]its records DIFFER from the original's[/]: this batch id was used before for other "
                       "records, and none of these were applied; give new records a new batch id")
    where = f", sequence {result.sequence}" if result.sequence is not None else ""
    out.print(f"{name}[{style}]{result.status.value}[/] (batch {show(result.batch_id)}{where}): {counts}")
    for error in result.errors:
        out.print(f"  - {escape(describe_error(error, batch))}")
    if result.superseded:
        out.print(f"  {len(result.superseded)} field(s) [yellow]superseded[/], kept from newer batches:")
        for item in result.superseded[:SUPERSEDED_SHOWN]:
            out.print(f"  - {show(item.product_id)}.{show(item.field)} (written by sequence {item.by_sequence})")
        if len(result.superseded) > SUPERSEDED_SHOWN:
            out.print(f"  - and {len(result.superseded) - SUPERSEDED_SHOWN} more (see --json)")
    if result.backup:
        out.print(f"  previous version kept as {show(result.backup)}")


def result_exit_code(result: BatchResult) -> int:
    """A duplicate exits as its original did; one whose records differ from the original's is refused."""
    if result.status == BatchStatus.DUPLICATE:
        if result.content_matches is False:
            return EXIT_REJECTED
        return result_exit_code(result.original) if result.original is not None else EXIT_OK
    return EXIT_REJECTED if result.status == BatchStatus.REJECTED else EXIT_OK


def exit_code_for(results: list[BatchResult]) -> int:
    return max((result_exit_code(r) for r in results), default=EXIT_OK)
