"""`catalog metrics`: the Prometheus exporter (one process, whatever the number of workers)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry, start_http_server

from catalog_core.errors import SettingsError
from catalog_cli.options import CatalogOption, RedisUrlOption, settings_from
from catalog_cli.output import err, show
from worker.metrics_export import CatalogCollector


def metrics(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve /metrics on.")] = 9808,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    catalog: CatalogOption = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Serve Prometheus metrics on http://HOST:PORT/metrics until stopped (Ctrl-C or SIGTERM).

    Workers record counters and histograms in Redis as they go; each scrape reads them, plus
    the queue, the unacknowledged batches, the lock, the state file, the catalog's size and
    products, and the backups. With Redis down it still answers, with catalog_redis_up 0.
    Metric names, and the alert rules and dashboard built on them: deploy/ and the README.
    """
    settings = settings_from(catalog, redis_url)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogCollector(settings))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = threading.Event()

    def stop_serving(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stop_serving)
    signal.signal(signal.SIGINT, stop_serving)
    err.print(f"serving metrics on http://{show(host)}:{port}/metrics")
    stop.wait()
    server.shutdown()
