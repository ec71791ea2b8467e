"""The example API on 127.0.0.1: ``GET /data?date=YYYY-MM-DD`` returns that day's records.

``RECORDS`` maps a day to its records; tests change it to play a source that withdraws records.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlparse

from cascade.testing import JsonHandler, LocalApiServer


def day_records(day: str, count: int = 5) -> list[dict[str, Any]]:
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    return [
        {"id": f"{day}-{n}", "created_at": (start + dt.timedelta(hours=n)).isoformat(), "amount": n * 10}
        for n in range(count)
    ]


class ExampleHandler(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server names it)
        self.record_request()
        url = urlparse(self.path)
        if url.path != "/data":
            self.send_json(404, {"message": "Not Found"})
            return
        day = parse_qs(url.query).get("date", [""])[0]
        server: ExampleServer = self.server  # type: ignore[assignment]
        self.send_json(200, server.records.get(day, day_records(day)))


class ExampleServer(LocalApiServer):
    def __init__(self, port: int = 0) -> None:
        super().__init__(ExampleHandler, port)
        self.records: dict[str, list[dict[str, Any]]] = {}


if __name__ == "__main__":
    with ExampleServer() as example:
        print(example.url, flush=True)
        example.serve_until_interrupted()
