"""The ``catalog chaos`` command."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from catalog_cli.dev import import_devtools
from catalog_cli.output import out


def chaos(
    seed: Annotated[int, typer.Option(help="Seed of the run: the same seed submits the same batches.")] = 1,
    batches: Annotated[int, typer.Option(help="Batches to submit.", min=1)] = 300,
    producers: Annotated[int, typer.Option(help="Producer processes.", min=1)] = 3,
    workers: Annotated[int, typer.Option(help="Celery worker processes.", min=1)] = 3,
    kills: Annotated[int, typer.Option(help="kill -9 of a worker, at most this many.", min=0)] = 12,
    redis_restarts: Annotated[int, typer.Option(help="kill -9 of Redis (inside a commit when one is seen "
                                                "within 3 s), restarted from its AOF.", min=0)] = 1,
    redis_wipes: Annotated[int, typer.Option(help="kill -9 of Redis, restarted EMPTY (as without persistence): "
                                             "producers must see batches as lost and resubmit them.", min=0)] = 0,
    pauses: Annotated[int, typer.Option(help="SIGSTOP of a worker past the lock expiry, then SIGCONT.", min=0)] = 2,
    malformed: Annotated[int, typer.Option(help="malformed messages pushed onto the queue.", min=0)] = 3,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
    keep: Annotated[Path | None, typer.Option(help="Run in this folder and keep it (logs, catalog, state).")] = None,
) -> None:
    """Prove exactly-once effects: workers killed and paused, Redis killed (inside commits, and once
    restarted empty), malformed messages, batches sent twice.

    At the end the catalog must equal the accepted batches applied one by one in sequence
    order, every batch must have exactly one outcome, nothing may be applied twice, and
    `catalog verify` must pass. Exit 0 only then. Needs no Redis: it starts its own.
    """
    import_devtools()
    from devtools.chaos.runner import ChaosOptions, run_chaos  # noqa: PLC0415 - a checkout only

    with tempfile.TemporaryDirectory(prefix="catalog-chaos-") as scratch:
        workdir = keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        options = ChaosOptions(seed, batches, producers, workers, kills, redis_restarts, timeout, workdir,
                               redis_wipes=redis_wipes, pauses=pauses, malformed=malformed)
        report = run_chaos(options, say=out.print)
        catalog = workdir / "catalog" / "products.json"
        verify = subprocess.run([sys.executable, "-m", "catalog_cli", "verify", "--catalog", str(catalog)],
                                capture_output=True, text=True, timeout=120)
        if verify.returncode != 0:
            report.problems.append(f"catalog verify failed: {verify.stderr.strip()}")
    for problem in report.problems[:50]:
        out.print(f"  mismatch: {problem}", markup=False)
    out.print(report.faults_line(), markup=False)
    out.print(report.last_line(), markup=False)
    raise typer.Exit(1 if report.mismatches else 0)
