"""Helpers for testing Cascade plugins: a local JSON API server with injectable faults.

Plugins build their API simulators on :class:`LocalApiServer` (it listens on 127.0.0.1 on a
free port, in a daemon thread) so tests talk to a real HTTP server that fails on demand::

    with MyApiServer() as server:
        server.fail(status=500, times=2)     # the next two matching responses are 500s
        ...

Faults can also be set over HTTP: ``POST /_cascade/faults`` with the :class:`Faults` fields as
JSON, ``DELETE /_cascade/faults`` to clear them; handy from another process.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlparse

FAULTS_PATH = "/_cascade/faults"


@dataclass
class Faults:
    """What the server does wrong. ``times`` counts the faulty responses down (None: forever).

    ``scope`` limits the fault to requests the server files under that name (a day, a user...).
    ``reset_in`` sends ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` that many seconds
    ahead; ``retry_after`` sends ``Retry-After``; ``headers`` adds any other header.
    """

    status: int | None = None
    times: int | None = None
    scope: str | None = None
    delay: float = 0.0
    malformed: bool = False
    retry_after: float | None = None
    reset_in: float | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def active(self) -> bool:
        return self.status is not None or self.malformed or bool(self.delay)

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(int(self.retry_after))
        if self.reset_in is not None:
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(int(time.time() + self.reset_in))
        return headers


class LocalApiServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 for one handler class; ``with Server() as s: s.url``."""

    daemon_threads = True
    thread_name = "cascade-local-api"

    def __init__(self, handler: type[JsonHandler], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.lock = threading.Lock()
        self.faults = Faults()
        self.requests: list[str] = []
        self.request_headers: list[dict[str, str]] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail(self, **settings: Any) -> None:
        """Inject a fault (see :class:`Faults`); replaces any fault set before."""
        with self.lock:
            self.faults = Faults(**settings)

    def heal(self) -> None:
        self.fail()

    def forget_requests(self) -> None:
        with self.lock:
            self.requests.clear()
            self.request_headers.clear()

    def take_fault(self, scope: str | None) -> Faults | None:
        """The fault to apply to a request filed under ``scope``, counting it down; else None."""
        with self.lock:
            faults = self.faults
            if not faults.active() or (faults.scope is not None and faults.scope != scope):
                return None
            if faults.times is not None:
                if faults.times <= 0:
                    return None
                faults.times -= 1
            return faults

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def serve_until_interrupted(self) -> None:
        """Print the URL (for a parent process to read), then serve in this thread until Ctrl-C."""
        print(self.url, flush=True)
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class JsonHandler(BaseHTTPRequestHandler):
    """Base request handler: JSON replies, request log, fault injection and the faults endpoint."""

    server: LocalApiServer
    malformed_body = b'[{"id": "broken", '

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        return

    def record_request(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
            self.server.request_headers.append(dict(self.headers.items()))

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def apply_faults(self, scope: str | None) -> bool:
        """Serve the injected fault for this request, if any; True when the response is sent."""
        faults = self.server.take_fault(scope)
        if faults is None:
            return False
        if faults.delay:
            time.sleep(faults.delay)
        if faults.status is not None:
            message = {"message": "injected fault", "status": faults.status}
            self.send_json(faults.status, message, faults.response_headers())
            return True
        if faults.malformed:
            self.send_json(200, self.malformed_body)
            return True
        return False

    def do_POST(self) -> None:
        if urlparse(self.path).path != FAULTS_PATH:
            self.send_json(404, {"message": "Not Found"})
            return
        length = int(self.headers.get("Content-Length", "0"))
        self.server.fail(**json.loads(self.rfile.read(length) or b"{}"))
        self.send_json(200, {"ok": True})

    def do_DELETE(self) -> None:
        if urlparse(self.path).path != FAULTS_PATH:
            self.send_json(404, {"message": "Not Found"})
            return
        self.server.heal()
        self.send_json(200, {"ok": True})
