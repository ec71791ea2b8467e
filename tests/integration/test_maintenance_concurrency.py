"""Maintenance while writers commit: two writer processes and a maintenance loop on one table.

The writers merge overlapping batches as ``tests/integration/test_concurrency.py`` does (on
PostgreSQL under Cascade's writer lock, as ``cascade.run`` does); meanwhile this process
compacts, rewrites manifests, expires snapshots and removes orphan files, again and again. At
the end no key is lost or duplicated (the table equals the model replayed in commit order), no
file that any snapshot references was removed, and an old orphan planted at the start is gone.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog import load_catalog
from pyiceberg.table import Table

from cascade import INGESTED_AT, CascadeConfig, merge_into
from cascade.catalog import open_catalog, writer_lock
from cascade.maintenance import maintain, referenced_files
from cascade.maintenance_policy import MaintenancePolicy
from tests.integration.test_concurrency import BY_BUCKET, SCHEMA

if TYPE_CHECKING:
    from tests.conftest import WriterProcesses

RUN_ID = "cascade.run-id"
WRITERS, BATCHES, SIZE = 2, 6, 30
ORPHAN_WINDOW = dt.timedelta(seconds=10)  # longer than any one merge takes from writing its files to committing
POLICY = MaintenancePolicy(
    expire_older_than=dt.timedelta(0),
    retain_last=8,
    compact=True,
    target_file_size=64 * 1024,
    rewrite_manifests=True,
    remove_orphans=True,
    orphan_older_than=ORPHAN_WINDOW,
)


def batch_rows(writer: int, number: int) -> list[int]:
    """Keys of batch ``number`` overlap the other writer's batch ``number`` only.

    Each batch lands in one bucket (``number % 4``), next to an earlier batch's file there, so
    partitions gather small files for compaction while the writers race on the shared keys.
    """
    return sorted(random.Random(f"{writer}-{number}").sample(range(number * 100, number * 100 + 60), SIZE))


def batch(writer: int, number: int) -> pa.Table:
    keys = batch_rows(writer, number)
    return pa.table(
        {
            "k": pa.array(keys, pa.int64()),
            "bucket": pa.array([number % 4] * len(keys), pa.int64()),  # a key never changes bucket
            "written_by": pa.array([f"w{writer}-b{number}"] * len(keys)),
            INGESTED_AT: pa.array([None] * len(keys), pa.timestamp("us", tz="UTC")),
        }
    )


@dataclass(frozen=True)
class Job:
    catalog_name: str
    properties: dict[str, str]
    writer: int


def write(job: Job) -> list[tuple[int, str]]:
    """One writer process: merge its batches; return each commit's sequence number and run id."""
    table = load_catalog(job.catalog_name, **job.properties).load_table("lake.events")
    commits = []
    for number in range(BATCHES):
        run = f"w{job.writer}-b{number}"
        with writer_lock(table, "main", wait_seconds=60) as locked:
            outcome = merge_into(
                table.refresh() if locked else table,
                batch(job.writer, number),
                "k",
                snapshot_properties={RUN_ID: run},
                stable_partitions=True,
            )
        assert outcome.committed
        # read at once: expiry keeps main's last 8 snapshots, far more than land meanwhile
        snapshot = table.refresh().snapshot_by_id(outcome.snapshot_id)
        assert snapshot is not None, f"{run}: its snapshot was expired before it could be read"
        commits.append((snapshot.sequence_number, run))
    return commits


def run_with_maintenance(pool: Pool, config: CascadeConfig, plant_orphan: Any) -> dict[str, Any]:
    catalog = open_catalog(config)
    catalog.create_namespace_if_not_exists("lake")
    table = catalog.create_table("lake.events", schema=SCHEMA, partition_spec=BY_BUCKET)
    orphan = plant_orphan(table)
    properties = dict(config.catalog)
    if properties["uri"].startswith("sqlite"):
        properties["uri"] += "?timeout=30"
    jobs = [Job(config.catalog_name, properties, w) for w in range(WRITERS)]
    reports = []
    pending = pool.map_async(write, jobs, chunksize=1)
    while not pending.ready():
        reports.append(maintain(table, POLICY))
    per_writer = pending.get()
    while time.time() < orphan.planted + ORPHAN_WINDOW.total_seconds() + 1:
        time.sleep(0.5)
    reports.append(maintain(table, POLICY))  # the planted orphan is now old enough to go
    table = table.refresh()
    model: dict[int, str] = {}
    for _, run in sorted(c for commits in per_writer for c in commits):  # replay in commit order
        writer, number = (int(part[1:]) for part in run.split("-"))
        model.update(dict.fromkeys(batch_rows(writer, number), run))
    rows = table.scan().to_arrow()
    return {"table": table, "rows": rows, "model": model, "reports": reports, "orphan": orphan.location}


@dataclass(frozen=True)
class Planted:
    location: str
    planted: float


def plant(table: Table) -> Planted:
    """A data file a dead run left behind: under the table's data folder, in no snapshot."""
    location = f"{table.location()}/data/bucket=0/00000-0-{uuid.uuid4()}.parquet"
    with table.io.new_output(location).create() as stream:
        pq.write_table(pa.table({"k": [1]}), stream)
    return Planted(location, time.time())


def check(outcome: dict[str, Any]) -> None:
    rows: pa.Table = outcome["rows"]
    stored = dict(zip(rows.column("k").to_pylist(), rows.column("written_by").to_pylist(), strict=True))
    assert rows.num_rows == len(stored)  # no duplicated key
    assert stored == outcome["model"]  # no lost update: the last committer wins every key
    reports = outcome["reports"]
    removed = {path for r in reports for path in r.orphans.files_removed}
    referenced = referenced_files(outcome["table"])
    assert not {p.split("://")[-1] for p in removed} & referenced  # nothing still referenced was removed
    assert outcome["orphan"] in removed
    assert sum(r.compaction.files_removed for r in reports) > 0
    assert sum(len(r.expiry.snapshots_expired) for r in reports) > 0
    assert len(outcome["table"].snapshots()) <= POLICY.retain_last + 1
    print(
        f"\n{len(reports)} maintenance runs during {WRITERS}x{BATCHES} merges: "
        f"{sum(r.compaction.files_removed for r in reports)} files compacted, "
        f"{sum(len(r.expiry.snapshots_expired) for r in reports)} snapshots expired, "
        f"{len(removed)} orphans removed, "
        f"most attempts {max(max(r.compaction.attempts, r.manifests.attempts, r.expiry.attempts) for r in reports)}"
    )


def test_maintenance_with_two_writer_processes_on_sqlite(writer_processes: WriterProcesses, tmp_path: Path) -> None:
    check(run_with_maintenance(writer_processes.at_least(WRITERS), CascadeConfig(home=tmp_path / "cascade"), plant))


def test_maintenance_with_two_writer_processes_on_postgres_and_s3(
    writer_processes: WriterProcesses, shared_servers: Any, catalog_name: str, tmp_path: Path
) -> None:
    from tests.conftest import shared_properties

    config = CascadeConfig(
        home=tmp_path, catalog_name=catalog_name, catalog_properties=shared_properties(shared_servers, catalog_name)
    )
    check(run_with_maintenance(writer_processes.at_least(WRITERS), config, plant))
