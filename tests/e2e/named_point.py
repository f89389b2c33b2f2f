"""Test harness: run an action at a named point of the code (before or after a module's function).

Used by paused_writer.py (SIGSTOP, once) and dying_worker.py (SIGKILL, on the N-th call), so
that a test can place a pause or a crash deterministically between two steps.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def at_point(module_name: str, function: str, when: str, action: Callable[[], None]) -> None:
    """Replace ``module_name.function`` by a wrapper that calls ``action`` ``before`` or ``after`` it."""
    if when not in ("before", "after"):
        raise ValueError(f"when must be before or after, not {when!r}")
    module = importlib.import_module(module_name)
    original: Callable[..., Any] = getattr(module, function)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            action()
        result = original(*args, **kwargs)
        if when == "after":
            action()
        return result

    setattr(module, function, wrapper)
