"""`catalog lock`: who holds the catalog's write lock, since when, and for how long still."""

from __future__ import annotations

import datetime as dt
from typing import Any

import redis

from catalog_core.errors import EXIT_OK, EXIT_REJECTED, RedisUnavailableError
from catalog_core.redis_client import connect, display_url
from catalog_cli.options import CatalogOption, JsonOption, RedisUrlOption, settings_from
from catalog_cli.output import out, print_json_line, show
from worker.lock import existing_lock_name
from worker.lock_info import LockView, read_lock


def lock_payload(view: LockView, expire: int) -> dict[str, Any]:
    return {"lock": view.name, "held": view.held, "ttl_seconds": view.ttl, "holder": view.holder,
            "held_seconds": view.held_for, "lock_expire": expire, "stuck": view.stuck(expire)}


def describe_lock(view: LockView, expire: int) -> str:
    """One line for a person: nobody, or who, since when, how long left (and why it looks stuck)."""
    if not view.held:
        return f"nobody holds the catalog lock ({view.name})"
    holder = view.holder
    if holder is None:
        who = "an unknown holder (no holder record: a writer of an older version, or set by hand)"
    else:
        since = dt.datetime.fromtimestamp(float(holder["since"]), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        who = (f"{holder.get('worker')} (host {holder.get('host')}, pid {holder.get('pid')}) since {since} "
               f"({view.held_for or 0:.1f}s)")
    left = "no expiry" if view.ttl is None else f"{view.ttl:.1f}s left"
    line = f"held by {who}, {left}"
    stuck = view.stuck(expire)
    return line + (f"; STUCK: {stuck}" if stuck else "")


def lock(catalog: CatalogOption = None, redis_url: RedisUrlOption = None, as_json: JsonOption = False) -> None:
    """Show who holds the catalog's write lock: worker, host, pid, since when and time left, or nobody.

    Every writer (worker, `catalog apply`, `catalog backups restore`) takes this lock for one
    commit, and renews it while it holds it, so a holder is normally seen for well under
    CATALOG_LOCK_EXPIRE seconds. Exit 0, or 1 when the lock looks stuck (held longer than the
    expiry, or with no or a longer expiry than a writer sets: `redis-cli DEL lock:NAME` frees it
    once you know its holder is dead), 3 when Redis does not answer.
    """
    settings = settings_from(catalog, redis_url, check_timing=False)
    client = connect(settings.redis_url)
    try:
        view = read_lock(client, existing_lock_name(settings.catalog_path))
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"Redis at {display_url(settings.redis_url)} failed: {type(exc).__name__}") from None
    if as_json:
        print_json_line(lock_payload(view, settings.lock_expire))
    else:
        out.print(show(describe_lock(view, settings.lock_expire)))
    raise SystemExit(EXIT_REJECTED if view.stuck(settings.lock_expire) else EXIT_OK)
