"""``catalog dev``: the command; the stack itself is test and development harness (devtools/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from catalog_core.errors import DevToolsMissingError

DEFAULT_DEMO = "the two files in examples/"


def import_devtools() -> None:
    try:
        import devtools  # noqa: F401, PLC0415 - only in a checkout, never in the production image
    except ImportError:
        raise DevToolsMissingError("this installation has no devtools/ (the production image leaves it out): "
                                   "run `catalog dev` and `catalog chaos` from a checkout, e.g. `make run`") from None


def dev(
    catalog: Annotated[Path | None, typer.Option(help="Use this catalog instead of .dev/catalog/products.json "
                                                 "(CATALOG_PATH is never used).")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Use this Redis instead of a private redis-server "
                                                  "(CATALOG_REDIS_URL is never used).")] = None,
    no_demo: Annotated[bool, typer.Option("--no-demo", help="Start the stack without the demo batches.")] = False,
    exit_after_demo: Annotated[bool, typer.Option("--exit-after-demo", help="Stop everything once the demo is "
                                                  "shown (for scripts and CI).")] = False,
    demo_file: Annotated[list[Path] | None, typer.Option(help="A demo batch to enqueue (repeatable). "
                                                         f"Default: {DEFAULT_DEMO}.")] = None,
    state_dir: Annotated[Path, typer.Option(help="The stack's own folder: catalog, Redis data, logs.")] = Path(".dev"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the worker and each demo batch.")] = 60,
) -> None:
    """Run a private stack in the foreground: Redis, a worker and beat; apply the demo batches.

    Everything lives in .dev/ (the catalog, Redis' data, the worker's and beat's logs), so an
    exported production CATALOG_PATH or CATALOG_REDIS_URL is never touched: only --catalog and
    --redis-url point it elsewhere. Ctrl-C stops everything (exit 0). Needs a checkout: the
    harness in devtools/ is not part of the production image.
    """
    import_devtools()
    from devtools.dev_stack import DEMO_FILES, DevOptions, run_dev  # noqa: PLC0415

    run_dev(DevOptions(state_dir=state_dir, catalog=catalog, redis_url=redis_url, demo=not no_demo,
                       demo_files=demo_file or DEMO_FILES, exit_after_demo=exit_after_demo, timeout=timeout))
