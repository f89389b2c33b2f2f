"""Log lines for people (text) or for machines (CATALOG_LOG_FORMAT=json: one JSON object per line).

Both formats go through ``MaskingFormatter``: every Redis URL's password (and ``password=``
query value) in a line, traceback included, is replaced by ``**``, as are the passwords of the
settings' own URLs wherever they appear bare. Log calls need not remember to use ``display_url``.

A batch's ``batch_id``, ``sequence`` and ``source`` are attached to every line logged while it
runs (``batch_context``, set by the worker around each ingest task); ``fence`` and any of them can
also be given per call with ``extra=``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from catalog_core.redis_client import MASK

CONTEXT_FIELDS = ("batch_id", "sequence", "source", "fence")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# scheme://user:PASSWORD@ and scheme://PASSWORD@ (old clients took a lone name as the password).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^\s/@'\"]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&][^=&\s]*password[^=&\s]*=)(?P<value>[^&\s'\"]*)", re.IGNORECASE)

_batch: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("catalog_batch", default=None)


@contextmanager
def batch_context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (batch_id, sequence, source, fence) to every line logged inside."""
    token = _batch.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _batch.reset(token)


def set_batch_context(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """As ``batch_context``, for code that starts and ends a batch in two callbacks (Celery signals)."""
    return _batch.set({k: v for k, v in fields.items() if v is not None})


def reset_batch_context(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _batch.reset(token)


def mask_urls(text: str) -> str:
    """``text`` with the password of every URL in it masked (``redis://:**@host``, ``?password=**``)."""

    def userinfo(match: re.Match[str]) -> str:
        user, has_password, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:{MASK}@" if has_password else f"{match['scheme']}{MASK}@"

    # Most lines hold neither a URL nor a password parameter: two substring tests spare them both regexes.
    if "://" in text:
        text = _URL_USERINFO.sub(userinfo, text)
    if "password" in text.lower():
        text = _QUERY_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", text)
    return text


def url_secrets(urls: Iterable[str | None]) -> set[str]:
    """The passwords in ``urls``, raw and percent-decoded, to mask wherever they appear."""
    found: set[str] = set()
    for url in urls:
        if not url:
            continue
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.password:
            found |= {parts.password, unquote(parts.password)}
        found |= {unquote(value) for key, _, value in (p.partition("=") for p in parts.query.split("&"))
                  if "password" in key.lower() and value}
    return {secret for secret in found if len(secret) >= 4}  # a 1-3 character "password" would mask everything


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the batch's fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        payload.update(_batch.get() or {})
        for name in CONTEXT_FIELDS:
            if name in record.__dict__:
                payload[name] = record.__dict__[name]
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


class MaskingFormatter(logging.Formatter):
    """Any formatter's output with every password masked (the last line of defence, both formats)."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = mask_urls(self.inner.format(record))
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def formatter_for(log_format: str, secrets: Iterable[str] = (), text: logging.Formatter | None = None
                  ) -> MaskingFormatter:
    """The formatter of CATALOG_LOG_FORMAT (``text`` keeps a given text formatter, e.g. Celery's colours)."""
    inner = JsonFormatter() if log_format == "json" else (text or logging.Formatter(TEXT_FORMAT))
    return MaskingFormatter(inner, secrets)


def apply_format(logger: logging.Logger, log_format: str, secrets: Iterable[str] = ()) -> None:
    """Give every handler of ``logger`` the chosen format, masked."""
    for handler in logger.handlers:
        current = handler.formatter
        if isinstance(current, MaskingFormatter):
            current = current.inner
        handler.setFormatter(formatter_for(log_format, secrets, current if log_format != "json" else None))
