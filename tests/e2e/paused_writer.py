"""`catalog apply` that stops itself (SIGSTOP) once, at a named point of the write path.

    python -m tests.e2e.paused_writer MODULE:FUNCTION:before|after catalog-args...

Test harness only: a deterministic pause between two steps, for tests that resume the
process (SIGCONT) when another writer is exactly where they want it.
"""

from __future__ import annotations

import os
import signal
import sys

from tests.e2e.named_point import at_point


def pause_once(module_name: str, function: str, when: str) -> None:
    paused: list[bool] = []

    def stop() -> None:
        if not paused:
            paused.append(True)
            os.kill(os.getpid(), signal.SIGSTOP)

    at_point(module_name, function, when, stop)


def main() -> None:
    module_name, function, when = sys.argv[1].split(":")
    pause_once(module_name, function, when)
    from catalog_cli.main import main as catalog_main  # noqa: PLC0415 - after the patch is in place

    sys.argv = ["catalog", *sys.argv[2:]]
    catalog_main()


if __name__ == "__main__":
    main()
