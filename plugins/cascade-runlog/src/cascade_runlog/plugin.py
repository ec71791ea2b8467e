"""The hook implementations: append each run's outcome to ``cascade.runs``."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import cascade
from cascade import hookimpl

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

    from cascade import CascadeConfig, IngestionResult, RunContext

RUNS_TABLE = ("cascade", "runs")


def runs_schema() -> Schema:
    """The run log's columns (built on first use: loading this plugin must not load pyiceberg)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import BooleanType, DoubleType, LongType, NestedField, StringType, TimestamptzType

    return Schema(
        NestedField(1, "run_id", StringType(), required=False),
        NestedField(2, "asset", StringType(), required=False),
        NestedField(3, "partition", StringType(), required=False),
        NestedField(4, "branch", StringType(), required=False),
        NestedField(5, "status", StringType(), required=False, doc="succeeded or failed"),
        NestedField(6, "committed", BooleanType(), required=False),
        NestedField(7, "rows_extracted", LongType(), required=False),
        NestedField(8, "rows_inserted", LongType(), required=False),
        NestedField(9, "rows_updated", LongType(), required=False),
        NestedField(10, "rows_unchanged", LongType(), required=False),
        NestedField(11, "duration_seconds", DoubleType(), required=False),
        NestedField(12, "error_class", StringType(), required=False),
        NestedField(13, "error_message", StringType(), required=False),
        NestedField(14, "snapshot_id", LongType(), required=False),
        NestedField(15, "finished_at", TimestamptzType(), required=False),
    )


_started: dict[str, float] = {}


# Each append adds a small manifest; merged once ten are listed (Iceberg's default is 100), so a
# reader of the log (``cascade status``) opens a handful of manifests, not a hundred.
RUNS_PROPERTIES = {"commit.manifest.min-count-to-merge": "10"}


def runs_table(config: CascadeConfig) -> Table:
    """The run log in ``config``'s catalog, created on first use."""
    return cascade.load_or_create_table(
        cascade.open_catalog(config), RUNS_TABLE, runs_schema(), properties=RUNS_PROPERTIES
    )


def append_run(context: RunContext, row: dict[str, Any]) -> None:
    record = {
        "run_id": context.run_id,
        "asset": context.asset,
        "partition": context.partition_date,
        "branch": context.branch,
        "finished_at": dt.datetime.now(dt.UTC),
        "duration_seconds": time.monotonic() - _started.pop(context.run_id, time.monotonic()),
        **row,
    }
    append_record(runs_table(context.config), record)


def append_record(table: Table, record: dict[str, Any]) -> None:
    """Append one run's row through Cascade's append (:func:`cascade.append_into`), which also
    expires the log's oldest snapshots as a merge does for an asset's table: the log gains a
    snapshot per run, and a table's metadata (read by every append and by ``cascade status``)
    grows with its snapshots. The rows stay; only their history goes.

    A log created before :data:`RUNS_PROPERTIES` existed gets them before its next row.
    """
    import pyarrow as pa
    from pyiceberg.exceptions import CommitFailedException

    if missing := {key: value for key, value in RUNS_PROPERTIES.items() if key not in table.properties}:
        try:
            table.transaction().set_properties(missing).commit_transaction()
        except CommitFailedException:
            table = table.refresh()  # another writer changed the log first; the next row tries again
    cascade.append_into(table, pa.Table.from_pylist([record]), where="cascade.runs")


@hookimpl
def cascade_run_started(context: RunContext) -> None:
    _started[context.run_id] = time.monotonic()


@hookimpl
def cascade_after_commit(context: RunContext, result: IngestionResult) -> None:
    append_run(
        context,
        {
            "status": "succeeded",
            "committed": result.committed,
            "rows_extracted": result.rows_extracted,
            "rows_inserted": result.rows_inserted,
            "rows_updated": result.rows_updated,
            "rows_unchanged": result.rows_unchanged,
            "snapshot_id": result.snapshot_id,
        },
    )


@hookimpl
def cascade_run_failed(context: RunContext, error: BaseException) -> None:
    append_run(
        context,
        {
            "status": "failed",
            "committed": False,
            "error_class": type(error).__name__,
            "error_message": cascade.redact(str(error))[:2000],
        },
    )
