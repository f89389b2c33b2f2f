"""``catalog dev``: the whole product in the foreground, for a first run and for local work.

It runs in a folder of its own (``.dev/``) with a private redis-server, one worker and one
beat, so that an operator's exported ``CATALOG_PATH`` / ``CATALOG_REDIS_URL`` are never
written to: only ``--catalog`` and ``--redis-url`` point it elsewhere, and it says which.
The terminal gets a short story (each step and each demo batch on one line, where things
are, what to try next); the worker's and beat's own logs go to files it names.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from catalog_core.errors import BatchFailedError, InputFileError, ProcessStartError
from catalog_core.redis_client import connect, display_url
from catalog_core.settings import Settings, load_settings
from catalog_cli.output import err, out, print_result, show
from devtools.redis_server import RedisServer
from devtools.supervisor import Supervisor, beat_command, wait_for_workers, worker_command
from worker.inspect import catalog_stats

if TYPE_CHECKING:
    from producers.api import Producer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_FILES = [EXAMPLES / "uae_attractions.jsonl", EXAMPLES / "uae_price_update.jsonl"]


@dataclass
class DevOptions:
    state_dir: Path
    catalog: Path | None  # None: <state_dir>/catalog/products.json
    redis_url: str | None  # None: a private redis-server in <state_dir>/redis
    demo: bool
    demo_files: list[Path]
    exit_after_demo: bool
    timeout: float


def _step(label: str, text: str) -> None:
    out.print(f"  [bold]{label:<7}[/] {text}")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _redis(options: DevOptions, stack: ExitStack) -> str:
    if options.redis_url is not None:
        connect(options.redis_url).close()  # an explicit Redis must answer: no silent fallback
        _step("redis", f"{display_url(options.redis_url)} (--redis-url)")
        return options.redis_url
    server = RedisServer(options.state_dir / "redis", appendonly=True)
    server.start()
    stack.callback(server.stop)
    _step("redis", f"private redis-server on {display_url(server.url)}, data in {_relative(server.data_dir)}")
    return server.url


def _run_demo(producer: Producer, demo_files: list[Path], timeout: float) -> None:
    missing = [str(path) for path in demo_files if not path.exists()]
    if missing:
        raise InputFileError(f"demo batch not found: {', '.join(missing)} (pass --demo-file, or --no-demo)")
    for demo_file in demo_files:
        handle = producer.submit_file(demo_file, source=f"demo:{demo_file.name}")[0]
        state = handle.wait(timeout)
        if state.result is None:
            raise BatchFailedError(f"demo batch {handle.batch_id} {state.state}: {state.reason}")
        out.print(f"  [bold]{'demo':<7}[/] {show(demo_file.name)}: ", end="")
        print_result(state.result, None)


def _program() -> str:
    """How the user can run `catalog` again, as they started it."""
    started = Path(sys.argv[0])
    if started.name == "catalog":
        on_path = shutil.which("catalog")
        return "catalog" if on_path and Path(on_path).resolve() == started.resolve() else _relative(started.resolve())
    return f"{_relative(Path(sys.executable))} -m catalog_cli"


def _next_steps(settings: Settings, redis_url: str) -> None:
    env = (f"CATALOG_PATH={shlex.quote(_relative(settings.catalog_path))} "
           f"CATALOG_REDIS_URL={shlex.quote(display_url(redis_url))}")
    out.print("try, in another terminal:")
    out.print(f"  {env} {_program()} enqueue examples/uae_price_update.jsonl --wait", markup=False)
    out.print(f"  {env} {_program()} stats", markup=False)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_dev(options: DevOptions) -> None:
    """Start the stack, tell its story, and stop it all on Ctrl-C (a clean exit) or when asked."""
    from producers.api import Producer  # noqa: PLC0415 - Celery is slow to import; only here

    # Explicit, because a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    state_dir = options.state_dir.resolve()
    options.state_dir = state_dir
    catalog = (options.catalog or state_dir / "catalog" / "products.json").resolve()
    ignored = [name for name in ("CATALOG_PATH", "CATALOG_REDIS_URL") if name in os.environ]
    out.print(f"[bold]catalog dev[/]: a stack of its own in {_relative(state_dir)}/"
              + (f" ({' and '.join(ignored)} not used: --catalog and --redis-url choose others)" if ignored else ""))
    try:
        with ExitStack() as stack:
            url = _redis(options, stack)
            # Everything else from the environment; never its catalog or Redis (unless given above).
            settings = load_settings(path=catalog, redis_url=url, result_url=url, backup_dir=catalog.parent / "backups",
                                     redis_password_file=None)
            supervisor = stack.enter_context(Supervisor(state_dir / "logs", {**os.environ, **settings.to_env()}))
            worker = supervisor.start("worker", worker_command("dev-worker@%h"))
            beat = supervisor.start("beat", beat_command(state_dir / "celerybeat-schedule"))
            producer = Producer(settings)
            wait_for_workers(producer.app, {"dev-worker": worker}, options.timeout)
            _step("worker", f"up, log {_relative(worker.log_path)}")
            _step("beat", f"up, log {_relative(beat.log_path)}")
            if options.demo:
                _run_demo(producer, options.demo_files, options.timeout)
            if catalog.exists():
                figures = catalog_stats(settings.catalog_path, settings.backup_path)
                _step("catalog", f"{show(_relative(catalog))}: {figures.products} products "
                                 f"({figures.active} active), {figures.backups} backup(s)")
            else:
                _step("catalog", f"{show(_relative(catalog))} (created by the first batch)")
            if options.exit_after_demo:
                return
            _next_steps(settings, url)
            out.print("Ctrl-C stops everything.")
            while not supervisor.dead():
                time.sleep(0.5)
            raise ProcessStartError(f"{', '.join(supervisor.dead())} exited unexpectedly; see {_relative(state_dir / 'logs')}")
    except KeyboardInterrupt:
        err.print("stopped.")
