"""``cascade backfill --workers 2`` in process: the summary, the failures and the workers' log lines."""

from __future__ import annotations

import json
import os
from typing import Any

import dlt
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from cascade import cascade_ingestion
from cascade.asset_registry import Registry

SCHEMA = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "pid", LongType(), required=False))
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]
FAILING = DAYS[1]
LEAKY_URL = "https://me:hunter2-pass@api.example/v1?api_key=k3y-s3cr3t-v4lue"


@pytest.fixture
def beats(registry: Registry) -> Any:
    @cascade_ingestion(table_name="beats", unique_key="id", iceberg_schema=SCHEMA, group="kinds")
    def beats(partition_date: str):  # type: ignore[no-untyped-def]
        if partition_date == FAILING:
            raise ValueError(f"the API has nothing for {partition_date} at {LEAKY_URL}")
        return dlt.resource([{"id": int(partition_date[-2:]), "pid": os.getpid()}], name="beats")

    return beats


def test_two_workers_report_as_one(cli, beats: Any) -> None:  # type: ignore[no-untyped-def]
    done = cli("backfill", "beats", "--start", DAYS[0], "--end", DAYS[-1], "--workers", "2")
    assert done.exit_code == 1, done.output
    assert "3 partition(s) ingested, 0 skipped (already ingested), 1 failed; 3 rows" in done.stdout
    assert f"failed {FAILING}: asset 'beats', partition {FAILING}: the source failed: ValueError" in done.stderr
    # the workers' log lines reach the command's own stderr, once each
    assert done.stderr.count('"event": "run finished"') == 3, done.stderr
    # a worker's error, on its way to the summary and in its own log line, is masked
    assert "hunter2-pass" not in done.output and "k3y-s3cr3t-v4lue" not in done.output
    assert "https://***@api.example/v1?api_key=***" in done.stderr
    again = cli("backfill", "beats", "--start", DAYS[0], "--end", DAYS[-1], "--workers", "2", "--json")
    report = json.loads(again.stdout)
    assert (report["skipped"], report["succeeded"], list(report["failed"])) == (
        [d for d in DAYS if d != FAILING],
        [],
        [FAILING],
    )
    assert (report["failure_kinds"], report["workers"], report["interrupted"]) == ({FAILING: "SourceError"}, 2, False)
