"""The timing rules the Celery settings must follow together, a combination that follows them, and
the nearest setting to a misspelled ``CATALOG_*`` variable.

Kept out of the ``Settings`` model on purpose: a command that never runs or sends a task
(``catalog stats``, ``verify``...) loads settings without these rules, and every rule is checked
and reported at once, instead of pydantic stopping at the first.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping

TIMING_FIELDS = ("lock_timeout", "task_time_limit", "visibility_timeout", "retry_backoff_max")
# When the values someone set contradict each other, the first of these is kept, the last changed:
# the visibility timeout is usually what an operator sets on purpose (to match the broker).
KEEP_FIRST = ("visibility_timeout", "task_time_limit", "lock_timeout", "retry_backoff_max")

RULES = ("CATALOG_LOCK_TIMEOUT < soft limit < CATALOG_TASK_TIME_LIMIT < CATALOG_VISIBILITY_TIMEOUT, "
         "the soft limit being CATALOG_TASK_TIME_LIMIT - max(5, CATALOG_TASK_TIME_LIMIT // 10) (at least 1); "
         "and CATALOG_RETRY_BACKOFF_MAX < CATALOG_VISIBILITY_TIMEOUT")

# Variables with the CATALOG_ prefix that are not settings, yet legitimate: never reported as unknown.
NOT_SETTINGS = frozenset({
    "CATALOG_SEED_DIR",    # where the tests find the seed data (tests/conftest.py)
    "CATALOG_LOG_FORMAT",  # reserved for the log format (text or JSON)
})


def variable(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"CATALOG_{field.upper()}"


def soft_time_limit(task_time_limit: int) -> int:
    """The soft limit leaves a batch time to clean up (remove its temp files) before the hard kill."""
    return max(task_time_limit - max(5, task_time_limit // 10), 1)


def timing_problems(values: Mapping[str, float]) -> list[str]:
    """Every timing rule ``values`` (the four ``TIMING_FIELDS``) break, each with why it matters."""
    lock, limit = values["lock_timeout"], int(values["task_time_limit"])
    visibility, backoff = values["visibility_timeout"], values["retry_backoff_max"]
    soft = soft_time_limit(limit)
    problems = []
    if not lock < soft:
        problems.append(f"CATALOG_LOCK_TIMEOUT ({lock:g}) must be less than the soft limit ({soft}, from "
                        f"CATALOG_TASK_TIME_LIMIT {limit}): a batch waiting for the lock must give up and be "
                        "retried before the soft limit ends it for good")
    if not limit < visibility:
        problems.append(f"CATALOG_TASK_TIME_LIMIT ({limit}) must be less than CATALOG_VISIBILITY_TIMEOUT "
                        f"({visibility:g}): a batch still running would be handed to a second worker")
    if not backoff < visibility:
        problems.append(f"CATALOG_RETRY_BACKOFF_MAX ({backoff:g}) must be less than CATALOG_VISIBILITY_TIMEOUT "
                        f"({visibility:g}): a batch waiting for its retry would be handed to a second worker")
    return problems


def _nice_limit_above(lock: float) -> int:
    """The smallest task time limit (rounded up to ten seconds from 30 s) whose soft limit exceeds ``lock``."""
    limit = max(3, int(lock * 10 / 9) - 2)
    while soft_time_limit(limit) <= lock:  # a few steps: the start is just below the answer
        limit += 1
    return limit if limit < 30 else math.ceil(limit / 10) * 10


def _fit_around(values: Mapping[str, float], kept: Collection[str]) -> dict[str, float]:
    """``values`` with those not in ``kept`` moved, where needed, to fit the kept ones."""
    lock, limit = values["lock_timeout"], int(values["task_time_limit"])
    visibility, backoff = int(values["visibility_timeout"]), int(values["retry_backoff_max"])
    if "task_time_limit" not in kept:
        if "visibility_timeout" in kept and limit >= visibility:
            limit = max(3, visibility * 2 // 3)  # the defaults' proportion, 600 of 900
        if "lock_timeout" in kept and soft_time_limit(limit) <= lock:
            limit = _nice_limit_above(lock)
    if "visibility_timeout" not in kept:
        needed = max(limit, backoff if "retry_backoff_max" in kept else 0)
        if visibility <= needed:
            visibility = max(needed * 3 // 2, needed + 5)
    if "lock_timeout" not in kept and not lock < soft_time_limit(limit):
        soft = soft_time_limit(limit)
        lock = soft - max(5, soft // 10) if soft > 5 else soft / 2
    if "retry_backoff_max" not in kept and not backoff < visibility:
        backoff = max(1, visibility // 2)
    return {"lock_timeout": lock, "task_time_limit": limit, "visibility_timeout": visibility,
            "retry_backoff_max": backoff}


def working_combination(values: Mapping[str, float], given: Collection[str]) -> dict[str, float]:
    """Timing values that follow every rule, keeping as many of the ``given`` (set by the user) as possible."""
    chosen = [field for field in KEEP_FIRST if field in given]
    for count in range(len(chosen), -1, -1):
        candidate = _fit_around(values, chosen[:count])
        if not timing_problems(candidate):
            return candidate
    # Unreachable with the fields' own bounds; the defaults follow every rule.
    return {"lock_timeout": 60, "task_time_limit": 600, "visibility_timeout": 900, "retry_backoff_max": 120}


def describe_combination(values: Mapping[str, float], proposal: Mapping[str, float], given: Collection[str]) -> str:
    """``CATALOG_X=1 (as set), CATALOG_Y=2 (instead of 3)...``: ready to copy into an env file."""
    parts = []
    for field in TIMING_FIELDS:
        value = proposal[field]
        notes = []
        if value != values[field]:
            notes.append(f"instead of {values[field]:g}")
        elif field in given:
            notes.append("as set")
        if field == "task_time_limit":
            notes.append(f"soft limit {soft_time_limit(int(value))}")
        parts.append(f"{variable(field)}={value:g}" + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(parts)


def invalid_configuration(problems: list[str], advice: list[str]) -> str:
    """The one message for every problem: a header, one problem a line, then the advice."""
    noun = "problem" if len(problems) == 1 else "problems"
    return "\n".join([f"invalid configuration ({len(problems)} {noun}):", *(f"  - {p}" for p in problems),
                      *(f"  {line}" for line in advice)])


def one_line(message: str) -> str:
    """A multi-line message of ours as one line, for a log or a process that must say it in one."""
    header, *rest = [line.strip().removeprefix("- ") for line in message.splitlines() if line.strip()]
    return " ".join([header, "; ".join(rest)]) if rest else header


def unknown_variables(environ: Mapping[str, str], settings: Collection[str]) -> list[tuple[str, str | None]]:
    """``CATALOG_*`` names in ``environ`` that are neither one of the ``settings`` variables nor
    allowed in ``NOT_SETTINGS``, each with the nearest setting (or None)."""
    known = {name.upper() for name in settings}
    unknown = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith("CATALOG_") and upper not in known and upper not in NOT_SETTINGS:
            nearest = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
            unknown.append((name, nearest[0] if nearest else None))
    return unknown


def unknown_variable_warning(name: str, nearest: str | None) -> str:
    hint = f"; did you mean {nearest}?" if nearest else ""
    return f"{name} is not a catalog setting and is ignored{hint}"
