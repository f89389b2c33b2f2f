"""Redis connections made on demand (never at import), with timeouts that suit the lock.

Also the one way to show a Redis URL to a person: ``display_url``, with every password masked.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlsplit

import redis

from catalog_core.errors import RedisUnavailableError

# A blocking lock wait (BLPOP) lasts at most LOCK_WAIT_STEP seconds; the socket must outlive it.
LOCK_WAIT_STEP = 1
SOCKET_TIMEOUT = 10.0
MASK = "**"


def display_url(url: str) -> str:
    """``url`` as it may be printed or logged: the password, wherever it is, replaced by ``**``.

    Like Celery's banner (kombu.utils.url.sanitize_url), which is not reused because it raises
    on a bad port (the very URL an "invalid Redis URL" message shows), prints a lone
    ``redis://secret@host`` name, mangles IPv6 hosts and drops the whole query.
    A URL that cannot be parsed loses its query and all before its last ``@``.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        scheme, separator, rest = url.partition("://")
        _, at, host_and_path = rest.split("?", 1)[0].rpartition("@")
        return f"{scheme}{separator}{MASK}@{host_and_path}" if at else f"{scheme}{separator}{host_and_path}"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        # A name without a password is masked too: old clients took `redis://secret@host` as the password.
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
    query = "&".join(
        f"{quote(key, safe='')}={MASK if 'password' in key.lower() else quote(value, safe='/:')}"
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _scrubbed(message: object, url: str) -> str:
    """An error message about ``url`` (a library's, not ours), with the URL's password masked."""
    text = str(message)
    userinfo = url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[0]
    user, has_password, password = userinfo.partition(":")
    secret = password if has_password else user
    for form in {secret, unquote(secret)} - {""}:
        text = text.replace(form, MASK)
    return text


def connect(url: str) -> redis.Redis:
    """A client for ``url``, checked with PING so that an unreachable server fails here, clearly."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=5, health_check_interval=30
        )
        client.ping()
    except ValueError as exc:
        raise RedisUnavailableError(f"invalid Redis URL {display_url(url)}: {_scrubbed(exc, url)}") from None
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {display_url(url)}: {_scrubbed(exc, url)}") from None
    return client
