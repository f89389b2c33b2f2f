"""`catalog health`: is ingestion healthy right now? One line per check, and an exit code for scripts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Annotated

import redis
import typer
from kombu.transport.redis import Channel as KombuChannel

from catalog_core.errors import EXIT_CANNOT_WRITE, EXIT_OK, EXIT_REJECTED, CatalogError
from catalog_core.redis_client import connect
from catalog_core.settings import Settings
from catalog_cli.options import CatalogOption, JsonOption, RedisUrlOption, settings_from
from catalog_cli.output import out, print_json_line, show
from producers.api import client_app
from worker.backups import backup_usage
from worker.catalog_digest import describes
from worker.catalog_file import parse_catalog, read_catalog_bytes
from worker.lock import existing_lock_name
from worker.lock_info import read_lock
from catalog_core.metric_keys import times_key
from worker.state import had_state, read_state, state_path

PING_TIMEOUT = 3.0  # default seconds a worker has to answer; its main process answers even while it runs batches
SETTLE_ATTEMPTS = 3  # a commit between its two renames disagrees for milliseconds: look again
SETTLE_PAUSE = 0.3


class Status(str, Enum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    SKIPPED = "skipped"


EXIT_FOR = {Status.OK: EXIT_OK, Status.SKIPPED: EXIT_OK, Status.DEGRADED: EXIT_REJECTED, Status.DOWN: EXIT_CANNOT_WRITE}
CHECKS = ("redis", "catalog", "backups", "lock", "unacked", "rotation", "workers")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


def check_redis(settings: Settings) -> tuple[Check, redis.Redis | None]:
    try:
        client = connect(settings.redis_url)
    except CatalogError as exc:  # the message has the URL with its password masked
        return Check("redis", Status.DOWN, str(exc)), None
    return Check("redis", Status.OK, "answers PING"), client


def _catalog_agrees(settings: Settings) -> Check:
    path = settings.catalog_path
    data = read_catalog_bytes(path)
    state = read_state(state_path(path))
    if data is None:
        if state is None:
            return Check("catalog", Status.OK, "no catalog yet")
        refused = (": writes refuse until it is restored (`catalog backups restore NAME`)"
                   if state.catalog_sha256 is not None else "")  # a state of rejections only records no catalog
        return Check("catalog", Status.DEGRADED, f"the state file exists but the catalog does not{refused}")
    products = parse_catalog(data, path)
    if state is None:
        if had_state(path):
            return Check("catalog", Status.DEGRADED, f"{len(products):,} products, but the state file is missing (its "
                         "previous version shows there was one): writes refuse until it is back, `catalog verify` "
                         "tells more")
        return Check("catalog", Status.OK, f"{len(products):,} products; no state file yet (no commit so far)")
    if not describes(state.catalog_sha256, data):
        return Check("catalog", Status.DEGRADED, f"{len(products):,} products, but the state file describes another "
                     "version (its digest): an interrupted commit or an edit by hand; the next write repairs or adopts "
                     "it, `catalog verify` tells more")
    return Check("catalog", Status.OK, f"{len(products):,} products; agrees with the state file (fence {state.fence})")


def check_catalog(settings: Settings) -> Check:
    """The catalog parses and its sha256 is the one the state file records (retried briefly: a commit in flight)."""
    for attempt in range(SETTLE_ATTEMPTS):
        try:
            check = _catalog_agrees(settings)
        except CatalogError as exc:
            check = Check("catalog", Status.DEGRADED, str(exc))
        if check.status is Status.OK or attempt == SETTLE_ATTEMPTS - 1:
            return check
        time.sleep(SETTLE_PAUSE)
    raise AssertionError("unreachable")


def check_backups(settings: Settings) -> Check:
    """Degraded well before the backups reach their byte cap (CATALOG_BACKUP_WARN_RATIO of it)."""
    try:
        usage = backup_usage(settings)
    except CatalogError as exc:
        return Check("backups", Status.DEGRADED, str(exc))
    detail = f"{usage.count} backup(s), {usage.total_bytes:,} bytes"
    if usage.cap_bytes <= 0:
        return Check("backups", Status.OK, f"{detail} (no cap)")
    share = f"{usage.total_bytes / usage.cap_bytes:.0%} of the {usage.cap_bytes:,}-byte cap (CATALOG_BACKUP_MAX_BYTES)"
    if usage.near_cap or usage.over_cap:
        return Check("backups", Status.DEGRADED, f"{detail}, {share}: rotation deletes the oldest past the cap; "
                     "raise the cap or free the disk")
    return Check("backups", Status.OK, f"{detail}, {share}")


def check_lock(settings: Settings, client: redis.Redis) -> Check:
    view = read_lock(client, existing_lock_name(settings.catalog_path))
    if not view.held:
        return Check("lock", Status.OK, "free")
    stuck = view.stuck(settings.lock_expire)
    if stuck:
        return Check("lock", Status.DEGRADED, f"{stuck} (`catalog lock` shows the holder)")
    return Check("lock", Status.OK, f"held, {view.ttl or 0:.1f}s left")


def check_unacked(settings: Settings, client: redis.Redis) -> Check:
    """kombu's unacked index (a sorted set scored by delivery time, shared by the queues of this Redis db)."""
    oldest = client.zrange(KombuChannel.unacked_index_key, 0, 0, withscores=True)
    count = client.zcard(KombuChannel.unacked_index_key)
    if not oldest:
        return Check("unacked", Status.OK, "no batch delivered and unacknowledged")
    age = max(0.0, time.time() - float(oldest[0][1]))
    detail = f"{count} unacknowledged, the oldest delivered {age:.0f}s ago"
    if age >= settings.visibility_timeout:
        return Check("unacked", Status.DEGRADED, f"{detail}, past CATALOG_VISIBILITY_TIMEOUT "
                     f"({settings.visibility_timeout}s): its worker died and no live worker restores it")
    return Check("unacked", Status.OK, detail)


def check_rotation(settings: Settings, client: redis.Redis) -> Check:
    """Beat rotates every CATALOG_ROTATE_EVERY seconds; it counts from beat's start until the first rotation."""
    times = client.hmget(times_key(settings.queue), ["last_rotation", "beat_started"])
    seen = [float(value) for value in times if value is not None]
    limit = 2 * settings.rotate_every
    if not seen:
        return Check("rotation", Status.DEGRADED, "beat never started or rotated: is `celery beat` running?")
    age = time.time() - max(seen)
    what = "last rotation" if times[0] is not None and float(times[0]) == max(seen) else "beat started"
    if age > limit:
        return Check("rotation", Status.DEGRADED, f"{what} {age:.0f}s ago, more than 2 intervals "
                     f"(2 x CATALOG_ROTATE_EVERY = {limit:g}s): beat or the workers are not running it")
    return Check("rotation", Status.OK, f"{what} {age:.0f}s ago")


def check_workers(settings: Settings, node: str | None, timeout: float) -> Check:
    app = client_app(settings, results=False)
    try:
        replies = app.control.ping(timeout=timeout, destination=[node] if node else None) or []
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; any means no answer
        return Check("workers", Status.DEGRADED, f"cannot ping: {type(exc).__name__}")
    finally:
        app.close()
    names = sorted(name for reply in replies for name in reply)
    if not names:
        whom = node or "any worker"
        return Check("workers", Status.DEGRADED, f"no answer from {whom} within {timeout:g}s")
    return Check("workers", Status.OK, f"{len(names)} answered: {', '.join(names)}")


def run_checks(settings: Settings, selected: list[str], node: str | None,
               ping_timeout: float = PING_TIMEOUT) -> list[Check]:
    checks: list[Check] = []
    client: redis.Redis | None = None
    needs_redis = [name for name in selected if name in ("lock", "unacked", "rotation", "workers")]
    if "redis" in selected or needs_redis:
        # Also when only checks that need Redis were asked for: without it they cannot pass.
        redis_check, client = check_redis(settings)
        checks.append(redis_check)
    if "catalog" in selected:
        checks.append(check_catalog(settings))
    if "backups" in selected:
        checks.append(check_backups(settings))
    with_redis: dict[str, Callable[[redis.Redis], Check]] = {
        "lock": lambda c: check_lock(settings, c), "unacked": lambda c: check_unacked(settings, c),
        "rotation": lambda c: check_rotation(settings, c), "workers": lambda c: check_workers(settings, node, ping_timeout)}
    for name in needs_redis:
        if client is None:
            checks.append(Check(name, Status.SKIPPED, "Redis does not answer"))
            continue
        try:
            checks.append(with_redis[name](client))
        except (redis.RedisError, CatalogError) as exc:
            checks.append(Check(name, Status.DOWN, f"Redis failed: {type(exc).__name__}"))
    return checks


def overall(checks: list[Check]) -> Status:
    statuses = {check.status for check in checks}
    return Status.DOWN if Status.DOWN in statuses else Status.DEGRADED if Status.DEGRADED in statuses else Status.OK


def health(
    catalog: CatalogOption = None, redis_url: RedisUrlOption = None, as_json: JsonOption = False,
    check: Annotated[list[str] | None, typer.Option(
        "--check", help=f"Run only this check (repeatable): {', '.join(CHECKS)}. Default: all.",
        show_default=False)] = None,
    node: Annotated[str | None, typer.Option(
        "--node", help="The workers check asks only this node (e.g. celery@$HOSTNAME), as a container's healthcheck.",
        show_default=False)] = None,
    ping_timeout: Annotated[float, typer.Option(
        "--ping-timeout", min=0.1, help="Seconds the workers have to answer the ping.")] = PING_TIMEOUT,
) -> None:
    """Check that ingestion is healthy now: one line per check.

    Checks: Redis answers; the catalog parses and agrees with its state file; the backups are
    below CATALOG_BACKUP_WARN_RATIO of their byte cap; no lock is held
    past its expiry; the oldest unacknowledged batch is younger than CATALOG_VISIBILITY_TIMEOUT;
    beat rotated backups within 2 x CATALOG_ROTATE_EVERY; at least one worker answers a ping
    (within --ping-timeout). Exit 0 healthy, 1 degraded (something needs a look, nothing is lost yet),
    3 down (Redis does not answer: nothing can be queued or written).
    """
    selected = check or list(CHECKS)
    unknown = sorted(set(selected) - set(CHECKS))
    if unknown:
        raise typer.BadParameter(f"unknown check {', '.join(unknown)}; choose from {', '.join(CHECKS)}",
                                 param_hint="--check")
    settings = settings_from(catalog, redis_url)
    checks = run_checks(settings, selected, node, ping_timeout)
    status = overall(checks)
    if as_json:
        print_json_line({"status": status.value, "checks": [{**asdict(c), "status": c.status.value} for c in checks]})
    else:
        for item in checks:
            colour = {"ok": "green", "skipped": "dim", "degraded": "yellow", "down": "red"}[item.status.value]
            out.print(f"[{colour}]{item.status.value:<8}[/] {item.name:<9} {show(item.detail)}", markup=True)
        out.print(f"{status.value}", markup=False)
    raise SystemExit(EXIT_FOR[status])
