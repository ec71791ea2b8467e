"""Real servers for the shared-catalog tests: PostgreSQL and an S3-compatible endpoint on 127.0.0.1.

PostgreSQL comes from Debian's packages (``postgresql``): a throwaway cluster is initialised
into a temporary folder with ``initdb`` and started with ``pg_ctl`` on a free port (as the
``postgres`` user when running as root, since PostgreSQL refuses root). The S3 endpoint is
moto's standalone server, standing in for S3 or MinIO. Both stop when the session ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PG_PASSWORD = "pg-Secret-for-tests-5b1c"
S3_KEY_ID, S3_SECRET = "cascade-test-key", "s3-Secret-for-tests-9d2e"
BUCKET = "cascade-lake"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path:
    """The folder of Debian's PostgreSQL server programs (``initdb``, ``pg_ctl``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    return Path(found[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class PostgresServer:
    """``with PostgresServer() as pg: pg.url(database)``; a fresh cluster with password auth over TCP."""

    port: int = 0
    folder: Path | None = None

    def start(self) -> PostgresServer:
        self.port = self.port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="cascade-pg-"))
        data, password_file = self.folder / "data", self.folder / "password"
        password_file.write_text(PG_PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            shutil.chown(password_file, "postgres")
        bin_dir = postgres_bin()
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={password_file}",
                 "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"]
            ),
            check=True, capture_output=True,
        )  # fmt: skip
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "log"),
                          "-w", "-t", "60", "start"]),
            check=True, capture_output=True,
        )  # fmt: skip
        return self

    def url(self, database: str = "postgres", password: str = PG_PASSWORD, port: int | None = None) -> str:
        return f"postgresql+psycopg2://postgres:{password}@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", password=PG_PASSWORD)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()

    def stop(self) -> None:
        if self.folder is None:
            return
        subprocess.run(
            _as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class S3Server:
    """moto's S3-compatible server on a free port, with one bucket: ``with S3Server() as s3: s3.endpoint``."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.port = self.port or free_port()
        moto_server = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def shared_catalog_properties(pg: PostgresServer, s3: S3Server, database: str, prefix: str) -> dict[str, str]:
    """pyiceberg properties of a SQL catalog in ``database`` with its warehouse under ``prefix`` in S3."""
    return {
        "type": "sql",
        "uri": pg.url(database),
        "warehouse": f"s3://{BUCKET}/{prefix}",
        "s3.endpoint": s3.endpoint,
        "s3.access-key-id": S3_KEY_ID,
        "s3.secret-access-key": S3_SECRET,
        "s3.region": "us-east-1",
    }


class FaultyProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server, that can be cut like a network link.

    ``cut()`` drops every open connection and refuses new ones until ``heal()``: to a client, the
    server is unreachable. ``with FaultyProxy(port) as proxy: proxy.port``.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.is_cut = False
        self.lock = threading.Lock()
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True, name="faulty-proxy")

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self.listener.close()

    def cut(self) -> None:
        with self.lock:
            self.is_cut = True
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self.connections.clear()

    def heal(self) -> None:
        with self.lock:
            self.is_cut = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.is_cut:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port))
                except OSError:
                    client.close()
                    continue
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
