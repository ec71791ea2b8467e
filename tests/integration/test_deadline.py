"""``max_runtime_seconds`` is a deadline everywhere: a trickling body, a slow ``before_commit`` hook."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import dlt
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

import cascade
from cascade import CascadeConfig, cascade_ingestion, hookimpl, http_session, register_hooks, unregister_hooks
from cascade.asset_registry import Registry
from cascade.errors import RunTimeoutError
from tests.conftest import snapshot_id

SCHEMA = Schema(NestedField(1, "id", LongType(), required=False))


class TrickleHandler(http.server.BaseHTTPRequestHandler):
    """200 and then a body of one byte per 100 ms, forever (or until the client hangs up)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/sized"):
            self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            return  # the client cut the connection: what the test wants

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def trickle() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TrickleHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/sized", "/until-close"])
def test_a_trickling_body_fails_a_5_s_run_within_6_s(
    registry: Registry, config: CascadeConfig, trickle: str, path: str
) -> None:
    url = f"{trickle}{path}?token=trickle-secret-0001"

    @cascade_ingestion(table_name="slow", unique_key="id", iceberg_schema=SCHEMA, group="drip", max_runtime_seconds=5)
    def slow(partition_date: str):  # type: ignore[no-untyped-def]
        return dlt.resource(http_session(trickle).get(url).json(), name="slow")

    started = time.monotonic()
    with pytest.raises(RunTimeoutError) as raised:
        cascade.run(slow, "2024-05-01", config=config)
    assert time.monotonic() - started < 6
    assert raised.value.transient
    assert f"{trickle}{path}?token=***" in str(raised.value) and "max_runtime_seconds=5" in str(raised.value)
    assert snapshot_id(config, "drip.slow") is None


class SlowAudit:
    """A ``cascade_before_commit`` hook that approves, but only after the run's budget is spent."""

    @hookimpl
    def cascade_before_commit(self, context: Any, plan: Any) -> None:
        time.sleep(max(0.0, context.remaining_seconds()) + 0.2)


def test_a_slow_before_commit_hook_past_the_budget_commits_nothing(registry: Registry, config: CascadeConfig) -> None:
    rows = [{"id": 1}]

    @cascade_ingestion(
        table_name="audited", unique_key="id", iceberg_schema=SCHEMA, group="drip", max_runtime_seconds=4
    )
    def audited(partition_date: str):  # type: ignore[no-untyped-def]
        return dlt.resource(rows, name="audited")

    cascade.run(audited, "2024-05-01", config=config)
    before = snapshot_id(config, "drip.audited")
    rows.append({"id": 2})
    name = register_hooks(SlowAudit(), "slow-audit")
    try:
        with pytest.raises(RunTimeoutError, match="max_runtime_seconds=4 during cascade_before_commit"):
            cascade.run(audited, "2024-05-02", config=config)
    finally:
        unregister_hooks(name)
    assert snapshot_id(config, "drip.audited") == before
