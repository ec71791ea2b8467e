"""A small Nightscout-compatible server on 127.0.0.1, for tests and ``cascade demo``.

It serves generated CGM readings (one every ``interval_seconds``, 5 minutes by default) for any
date, through ``GET /api/v1/entries.json`` with Nightscout's query parameters:
``find[date][$gte|$gt|$lte|$lt]`` (epoch ms), ``find[dateString][$gte|$lt]`` (ISO), ``count``
(default 10), newest first. With a ``token`` set, requests need ``?token=`` or the
``api-secret`` header (SHA-1 of the token), as Nightscout does.

Faults for tests come from :mod:`cascade.testing`: in process (``server.fail(...)``) or over
HTTP (``POST /_cascade/faults`` with JSON ``{"status": 500, "times": 2, "scope": "2024-01-03"}``;
``DELETE`` clears them). Faults are scoped by the requested day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

from cascade.testing import JsonHandler, LocalApiServer

DAY_MS = 86_400_000
DIRECTIONS = ("Flat", "FortyFiveUp", "FortyFiveDown", "SingleUp", "SingleDown")


@dataclass
class NightscoutState:
    token: str | None = None
    interval_seconds: float = 300.0


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


class NightscoutHandler(JsonHandler):
    server: NightscoutServer
    malformed_body = b'[{"_id": "broken", "sgv": '

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        token = self.server.state.token
        if token is None:
            return True
        hashed = hashlib.sha1(token.encode()).hexdigest()
        return query.get("token", [None])[-1] == token or self.headers.get("api-secret") in (token, hashed)

    def do_GET(self) -> None:  # noqa: N802 (http.server names it)
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.record_request()
        if url.path == "/api/v1/status.json":
            self.send_json(200, {"status": "ok", "name": "cascade-nightscout-simulator"})
            return
        if url.path not in ("/api/v1/entries.json", "/api/v1/entries/sgv.json", "/api/v1/entries"):
            self.send_json(404, {"status": 404, "message": "not found"})
            return
        if not self._authorized(query):
            self.send_json(401, {"status": 401, "message": "Unauthorized"})
            return
        low, high = _bounds(query)
        day = dt.datetime.fromtimestamp(low / 1000, dt.UTC).date().isoformat() if low else None
        if self.apply_faults(day):
            return
        count = int(query.get("count", ["10"])[-1])
        interval_ms = int(self.server.state.interval_seconds * 1000)
        times = readings_between(low, high, interval_ms)[:count]
        self.send_json(200, [reading(t) for t in times])


class NightscoutServer(LocalApiServer):
    """``with NightscoutServer() as server: server.url`` serves on a free loopback port.

    Faults (see :class:`cascade.testing.Faults`) are scoped by day: ``fail(status=500, scope="2024-01-03")``.
    """

    thread_name = "nightscout-simulator"

    def __init__(self, port: int = 0, *, token: str | None = None, interval_seconds: float = 300.0) -> None:
        super().__init__(NightscoutHandler, port)
        self.state = NightscoutState(token=token, interval_seconds=interval_seconds)


def main() -> None:
    """``python -m cascade_nightscout.server [PORT] [--token T] [--interval SECONDS]``: serve until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--token")
    parser.add_argument("--interval", type=float, default=300.0)
    args = parser.parse_args()
    server = NightscoutServer(args.port, token=args.token, interval_seconds=args.interval)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
