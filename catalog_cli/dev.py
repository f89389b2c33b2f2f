"""``catalog dev``: the whole product in the foreground, for a first run and for local work.

Redis (the configured one if it answers, else a private redis-server), one Celery worker and
one beat as child processes, then a demo batch enqueued, applied and shown. Ctrl-C stops all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from catalog_core.errors import CatalogError, RedisUnavailableError
from catalog_core.processes import die_with_parent
from catalog_core.redis_client import connect, display_url
from catalog_core.redis_server import RedisServer
from catalog_core.settings import Settings
from catalog_cli.options import CatalogOption, RedisUrlOption, settings_from
from catalog_cli.output import err, out, print_result
from catalog_cli.store_commands import print_stats
from worker.inspect import catalog_stats

if TYPE_CHECKING:
    from producers.api import Producer

# The same commands docker-compose.yml runs (there as `celery ...`).
WORKER_ARGS = ["-A", "worker", "worker", "--loglevel=INFO"]
BEAT_ARGS = ["-A", "worker", "beat", "--loglevel=INFO"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_FILES = [EXAMPLES / "uae_attractions.jsonl", EXAMPLES / "uae_price_update.jsonl"]


class DevStackError(CatalogError):
    """Raised when a process of the dev stack fails to start or dies."""


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", *args]


def _stop(process: subprocess.Popen[bytes], name: str, grace: float = 20) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # Celery's warm shutdown: finish the running batch
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        err.print(f"{name} did not stop within {grace:g}s; killing it")
        process.kill()
        process.wait(10)


def _redis_for(settings: Settings, state_dir: Path, stack: ExitStack) -> str:
    try:
        connect(settings.redis_url).close()
        err.print(f"using Redis at {display_url(settings.redis_url)}")
        return settings.redis_url
    except RedisUnavailableError:
        pass
    server = RedisServer(state_dir / "redis", appendonly=True)
    server.start()
    stack.callback(server.stop)
    err.print(f"no Redis at {display_url(settings.redis_url)}: started {server.binary} on {display_url(server.url)} "
              f"(data in {server.data_dir})")
    return server.url


def _wait_for_worker(producer: Producer, worker: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise DevStackError(f"the worker exited at start (code {worker.returncode}); see its log above")
        if producer.app.control.ping(timeout=0.5):
            return
    raise DevStackError(f"the worker did not answer within {timeout:g}s")


def _run_demo(settings: Settings, producer: Producer, demo_files: list[Path], timeout: float) -> None:
    missing = [str(path) for path in demo_files if not path.exists()]
    if missing:
        raise DevStackError(f"demo batch not found: {', '.join(missing)} (pass --demo-file, or --no-demo)")
    for demo_file in demo_files:
        handle = producer.submit_file(demo_file, source=f"demo:{demo_file.name}")[0]
        err.print(f"enqueued {demo_file.name} as batch {handle.batch_id}")
        state = handle.wait(timeout)
        if state.result is None:
            raise DevStackError(f"demo batch {handle.batch_id} {state.state}: {state.reason}")
        out.print(f"{demo_file.name}: ", end="")
        print_result(state.result, None)
    print_stats(catalog_stats(settings.catalog_path, settings.backup_path))


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def dev(
    catalog: CatalogOption = None,
    redis_url: RedisUrlOption = None,
    no_demo: Annotated[bool, typer.Option("--no-demo", help="Start the stack without the demo batch.")] = False,
    exit_after_demo: Annotated[bool, typer.Option("--exit-after-demo", help="Stop everything once the demo is "
                                                  "shown (for scripts and CI).")] = False,
    demo_file: Annotated[list[Path] | None, typer.Option(help="A demo batch to enqueue (repeatable). "
                                                         "Default: the two files in examples/.")] = None,
    state_dir: Annotated[Path, typer.Option(help="Where a private Redis and beat keep their files.")] = Path(".dev"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the worker and the demo.")] = 60,
) -> None:
    """Run Redis, a worker and beat in the foreground; enqueue a demo batch and show the catalog.

    Ctrl-C stops everything cleanly. Use --no-demo to keep the stack for real work.
    """
    from producers.api import Producer  # noqa: PLC0415 - Celery is slow to import; only here

    settings = settings_from(catalog, redis_url)
    # Explicit, because a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    with ExitStack() as stack:
        url = _redis_for(settings, state_dir.resolve(), stack)
        if url != settings.redis_url:  # our private server: it has no password
            settings = settings.model_copy(update={"redis_url": url, "redis_password_file": None})
        env = {**os.environ, **settings.to_env()}
        state_dir.mkdir(parents=True, exist_ok=True)
        children = {
            "worker": celery_command(*WORKER_ARGS, "--concurrency=1", "--hostname=dev-worker@%h"),
            "beat": celery_command(*BEAT_ARGS, f"--schedule={state_dir.resolve() / 'celerybeat-schedule'}"),
        }
        processes = {}
        for name, command in children.items():
            processes[name] = subprocess.Popen(command, env=env, start_new_session=True,
                                               preexec_fn=die_with_parent)
            stack.callback(_stop, processes[name], name)
        producer = Producer(settings)
        _wait_for_worker(producer, processes["worker"], timeout)
        err.print(f"worker and beat are up; catalog: {settings.catalog_path}")
        if not no_demo:
            _run_demo(settings, producer, demo_file or DEMO_FILES, timeout)
        if exit_after_demo:
            return
        out.print("[bold]running[/]: enqueue with `catalog enqueue FILE --wait` "
                  f"(CATALOG_REDIS_URL={display_url(url)}); Ctrl-C stops everything")
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        dead = [name for name, p in processes.items() if p.poll() is not None]
        raise DevStackError(f"{', '.join(dead)} exited unexpectedly; stopping the stack")



