"""A polite library: importing Cascade and calling ``cascade.run`` / ``merge_into`` leave the host's
process as it was. No output, no logging configuration of other libraries, no environment
variables, no global OpenTelemetry provider (unless ``OTEL_*`` asks for export and none is set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, logging, os, sys

def logging_state():
    # dlt sets up its own "dlt" logger when its runtime starts; only what Cascade could change is compared
    names = ["", "pyiceberg", "sqlalchemy", "urllib3", "opentelemetry", "pyarrow"]
    return {n: [logging.getLogger(n).level, len(logging.getLogger(n).handlers), logging.getLogger(n).propagate]
            for n in names}

import dlt, pyarrow as pa, sqlalchemy, structlog, urllib3  # their own import-time logging set-up is theirs
from opentelemetry import trace
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

environment, logging_before = dict(os.environ), logging_state()

import cascade
from cascade import cascade_ingestion

schema = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "name", StringType(), required=False))
home = sys.argv[1]
catalog = SqlCatalog("plain", uri=f"sqlite:///{home}/plain.db", warehouse=f"file://{home}/warehouse")
catalog.create_namespace("plain")
table = catalog.create_table("plain.people", schema=schema)
for batch in ([1, 2], [2, 3]):
    cascade.merge_into(table, pa.table({"id": pa.array(batch, pa.int64()), "name": [f"p{i}" for i in batch]}), "id")
    table = table.refresh()

@cascade_ingestion(table_name="people", unique_key="id", iceberg_schema=schema, group="polite")
def people(partition_date):
    return dlt.resource([{"id": 1, "name": "a"}], name="people")

config = cascade.CascadeConfig(home=__import__("pathlib").Path(home) / "cascade")
result = cascade.run(people, "2024-05-01", config=config)
try:
    cascade.run(people, "2024-05-32", config=config)
except cascade.CascadeError:
    pass

report = {
    "rows": table.scan().to_arrow().num_rows,
    "inserted": result.rows_inserted,
    "environment_changed": sorted(k for k in {*os.environ, *environment} if os.environ.get(k) != environment.get(k)),
    "logging_changed": {n: [logging_before[n], s] for n, s in logging_state().items() if s != logging_before[n]},
    "structlog_configured": structlog.is_configured(),
    "tracer_provider": type(trace.get_tracer_provider()).__name__,
}
with open(sys.argv[2], "w") as out:
    json.dump(report, out)
"""


@pytest.mark.parametrize("otel", [None, "console"], ids=["no-otel-env", "otel-console"])
def test_a_plain_script_calling_cascade_prints_and_changes_nothing(tmp_path: Path, otel: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CASCADE_"))}
    if otel:
        env["OTEL_TRACES_EXPORTER"] = otel
    report_file = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(report_file)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(report_file.read_text())
    assert (report["rows"], report["inserted"]) == (3, 1)
    assert report["environment_changed"] == []
    assert report["logging_changed"] == {}
    assert report["structlog_configured"] is False
    if otel is None:
        assert (done.stdout, done.stderr) == ("", "")
        assert report["tracer_provider"] == "ProxyTracerProvider"
    else:  # asked for by the standard variable: spans on stderr, stdout still untouched
        assert done.stdout == "" and '"name": "cascade.run"' in done.stderr
        assert report["tracer_provider"] == "TracerProvider"
