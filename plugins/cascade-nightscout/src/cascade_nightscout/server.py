"""A small Nightscout-compatible server on 127.0.0.1, for tests and ``cascade demo``.

It serves generated CGM readings (one every ``interval_seconds``, 5 minutes by default) for any
date, through ``GET /api/v1/entries.json`` with Nightscout's query parameters:
``find[date][$gte|$gt|$lte|$lt]`` (epoch ms), ``find[dateString][$gte|$lt]`` (ISO), ``count``
(default 10), newest first. With a ``token`` set, requests need ``?token=`` or the
``api-secret`` header (SHA-1 of the token), as Nightscout does.

Faults for tests, in process (``server.faults``) or over HTTP (``POST /_cascade/faults`` with
JSON ``{"status": 500, "times": 2, "day": "2024-01-03", "delay": 1.5, "malformed": true}``;
``DELETE`` clears them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

DAY_MS = 86_400_000
DIRECTIONS = ("Flat", "FortyFiveUp", "FortyFiveDown", "SingleUp", "SingleDown")


@dataclass
class Faults:
    """What the server does wrong; ``times`` counts down the faulty responses (None: forever)."""

    status: int | None = None
    times: int | None = None
    day: str | None = None
    delay: float = 0.0
    malformed: bool = False

    def applies(self, day: str | None) -> bool:
        if self.status is None and not self.malformed and not self.delay:
            return False
        return self.day is None or self.day == day


@dataclass
class NightscoutState:
    token: str | None = None
    interval_seconds: float = 300.0
    faults: Faults = field(default_factory=Faults)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def reading(epoch_ms: int) -> dict[str, Any]:
    """One deterministic CGM reading at ``epoch_ms``."""
    digest = hashlib.sha1(str(epoch_ms).encode()).hexdigest()
    minutes = epoch_ms / 60_000
    sgv = int(120 + 45 * math.sin(minutes / 180) + int(digest[:2], 16) % 15)
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)
    return {
        "_id": digest[:24],
        "device": "cascade-simulator",
        "date": epoch_ms,
        "dateString": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sysTime": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sgv": sgv,
        "delta": round(math.cos(minutes / 180) * 1.25, 3),
        "direction": DIRECTIONS[int(digest[2], 16) % len(DIRECTIONS)],
        "type": "sgv",
        "noise": 1,
        "rssi": 100,
        "utcOffset": 0,
    }


def readings_between(start_ms: int, end_ms: int, interval_ms: int) -> list[int]:
    """Reading times in [start_ms, end_ms), aligned to the interval from the epoch, newest first."""
    first = -(-start_ms // interval_ms) * interval_ms
    return list(range(first, end_ms, interval_ms))[::-1]


def _bounds(query: dict[str, list[str]]) -> tuple[int, int]:
    low, high = 0, int(time.time() * 1000) + DAY_MS
    for name, values in query.items():
        value = values[-1]
        if name.startswith("find[date]"):
            number = int(float(value))
        elif name.startswith("find[dateString]"):
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
            number = int(parsed.timestamp() * 1000)
        else:
            continue
        if name.endswith("[$gte]"):
            low = max(low, number)
        elif name.endswith("[$gt]"):
            low = max(low, number + 1)
        elif name.endswith("[$lt]"):
            high = min(high, number)
        elif name.endswith("[$lte]"):
            high = min(high, number + 1)
    return low, high


class NightscoutHandler(BaseHTTPRequestHandler):
    server: NightscoutServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        return

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        token = self.server.state.token
        if token is None:
            return True
        hashed = hashlib.sha1(token.encode()).hexdigest()
        return query.get("token", [None])[-1] == token or self.headers.get("api-secret") in (token, hashed)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        state = self.server.state
        with state.lock:
            state.requests.append(self.path)
        if url.path == "/api/v1/status.json":
            self._send(200, json.dumps({"status": "ok", "name": "cascade-nightscout-simulator"}).encode())
            return
        if url.path not in ("/api/v1/entries.json", "/api/v1/entries/sgv.json", "/api/v1/entries"):
            self._send(404, b'{"status": 404, "message": "not found"}')
            return
        if not self._authorized(query):
            self._send(401, b'{"status": 401, "message": "Unauthorized"}')
            return
        low, high = _bounds(query)
        day = dt.datetime.fromtimestamp(low / 1000, dt.UTC).date().isoformat() if low else None
        if self._apply_faults(day):
            return
        count = int(query.get("count", ["10"])[-1])
        interval_ms = int(state.interval_seconds * 1000)
        times = readings_between(low, high, interval_ms)[:count]
        self._send(200, json.dumps([reading(t) for t in times]).encode())

    def _apply_faults(self, day: str | None) -> bool:
        state = self.server.state
        with state.lock:
            faults = state.faults
            if not faults.applies(day):
                return False
            if faults.times is not None:
                if faults.times <= 0:
                    return False
                faults.times -= 1
            status, delay, malformed = faults.status, faults.delay, faults.malformed
        if delay:
            time.sleep(delay)
        if status is not None:
            self._send(status, json.dumps({"status": status, "message": "injected fault"}).encode())
            return True
        if malformed:
            self._send(200, b'[{"_id": "broken", "sgv": ')
            return True
        return False

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/_cascade/faults":
            self._send(404, b"{}")
            return
        length = int(self.headers.get("Content-Length", "0"))
        settings = json.loads(self.rfile.read(length) or b"{}")
        with self.server.state.lock:
            self.server.state.faults = Faults(**settings)
        self._send(200, b'{"ok": true}')

    def do_DELETE(self) -> None:
        with self.server.state.lock:
            self.server.state.faults = Faults()
        self._send(200, b'{"ok": true}')


class NightscoutServer(ThreadingHTTPServer):
    """``with NightscoutServer() as server: server.url`` serves on a free loopback port."""

    daemon_threads = True

    def __init__(self, port: int = 0, *, token: str | None = None, interval_seconds: float = 300.0) -> None:
        super().__init__(("127.0.0.1", port), NightscoutHandler)
        self.state = NightscoutState(token=token, interval_seconds=interval_seconds)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def fail(self, **settings: Any) -> None:
        """Inject a fault (see :class:`Faults`)."""
        with self.state.lock:
            self.state.faults = Faults(**settings)

    def heal(self) -> None:
        self.fail()

    def start(self) -> NightscoutServer:
        self._thread = threading.Thread(target=self.serve_forever, name="nightscout-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> NightscoutServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python -m cascade_nightscout.server [PORT] [--token T] [--interval SECONDS]``: serve until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--token")
    parser.add_argument("--interval", type=float, default=300.0)
    args = parser.parse_args()
    server = NightscoutServer(args.port, token=args.token, interval_seconds=args.interval)
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
