"""Maintenance benchmark: hourly-shaped merges into one table, without and with daily maintenance.

Each run merges 288 readings of the current day (24 runs a day, so the day's readings are
updated again and again) into a day-partitioned table on the embedded SQLite catalog, as an
hourly schedule does. With ``maintained``, ``cascade.maintenance.maintain`` runs after every
24th merge (compaction, manifest rewrite, expiry keeping 24 snapshots, orphans older than 0s:
nothing else writes here). Every ``--every`` runs it prints the median merge seconds of that
window, the manifests of the current snapshot, live data files, snapshots, the current metadata
file's size and the files on disk.

    python bench/maintenance.py --runs 300 --every 50

Nothing is asserted: read the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from cascade import INGESTED_AT, merge_into
from cascade.maintenance import maintain
from cascade.maintenance_policy import MaintenancePolicy

SCHEMA = Schema(
    NestedField(1, "id", StringType()),
    NestedField(2, "at", TimestamptzType()),
    NestedField(3, "sgv", LongType()),
    NestedField(4, INGESTED_AT, TimestamptzType()),
)
BY_DAY = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="at_day"))
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
POLICY = MaintenancePolicy(
    expire_older_than=dt.timedelta(0),
    retain_last=24,
    compact=True,
    target_file_size=8 * 1024 * 1024,
    rewrite_manifests=True,
    remove_orphans=True,
    orphan_older_than=dt.timedelta(0),
)


def readings(run: int) -> pa.Table:
    day = START + dt.timedelta(days=run // 24)
    times = [day + dt.timedelta(minutes=5 * i) for i in range(288)]
    return pa.table(
        {
            "id": [f"{t:%Y%m%d%H%M}" for t in times],
            "at": pa.array(times, pa.timestamp("us", tz="UTC")),
            "sgv": pa.array([100 + (i * 7 + run) % 90 for i in range(288)], pa.int64()),
            INGESTED_AT: pa.array([None] * 288, pa.timestamp("us", tz="UTC")),
        }
    )


def files_on_disk(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def measure(runs: int, every: int, maintained: bool) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        warehouse = Path(folder) / "wh"
        warehouse.mkdir()
        catalog = SqlCatalog("bench", uri=f"sqlite:///{folder}/c.db", warehouse=warehouse.as_uri())
        catalog.create_namespace("n")
        table = catalog.create_table(
            "n.glucose", schema=SCHEMA, partition_spec=BY_DAY, properties={"cascade.unique-key": "id"}
        )
        seconds: list[float] = []
        maintenance_seconds = 0.0
        for run in range(1, runs + 1):
            batch = readings(run - 1)
            started = time.perf_counter()
            merge_into(table, batch, "id", stable_partitions=True)
            seconds.append(time.perf_counter() - started)
            if maintained and run % 24 == 0:
                maintenance_seconds += maintain(table, POLICY).seconds
            if run % every == 0:
                head = table.refresh().current_snapshot()
                rows.append(
                    {
                        "runs": f"{run - every + 1}-{run}",
                        "median merge s": f"{statistics.median(seconds[-every:]):.3f}",
                        "manifests": len(head.manifests(table.io)) if head else 0,
                        "data files": sum(1 for _ in table.scan().plan_files()),
                        "snapshots": len(table.snapshots()),
                        "metadata KB": f"{os.path.getsize(table.metadata_location.removeprefix('file://')) / 1024:.0f}",
                        "files on disk": files_on_disk(warehouse),
                        "maintenance s": f"{maintenance_seconds:.1f}" if maintained else "-",
                    }
                )
    return rows


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    print(f"\n{title}")
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).rjust(w) for c, w in zip(columns, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args()
    for maintained in (False, True):
        title = "with daily maintenance" if maintained else "no maintenance"
        print_table(title, measure(args.runs, args.every, maintained))


if __name__ == "__main__":
    main()
