"""Many writers, one table: concurrent merges from separate processes, on PostgreSQL+S3 and SQLite.

On PostgreSQL, writers take Cascade's per-table writer lock as ``cascade.run`` does; on SQLite
there is none, and concurrent merges rely on the commit's head check and re-planning (the race
itself is tested thread by thread in ``test_merge``).

Every writer is its own process (spawned), with its own catalog connection, merging batches with
overlapping keys. The final table must equal the model built by replaying the batches in the
order their snapshots were committed (the last committer wins per key), with one row per key.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from cascade import INGESTED_AT, CascadeConfig, merge_into
from cascade.catalog import open_catalog, writer_lock

if TYPE_CHECKING:
    from tests.conftest import WriterProcesses

RUN_ID = "cascade.run-id"
SCHEMA = Schema(
    NestedField(1, "k", LongType(), required=False),
    NestedField(2, "bucket", LongType(), required=False),
    NestedField(3, "written_by", StringType(), required=False),
    NestedField(4, INGESTED_AT, TimestamptzType(), required=False),
)
BY_BUCKET = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="bucket"))
KEYS = 400  # keys 0..399, so batches of 150 from 8 writers overlap heavily


def batch_rows(writer: int, number: int, size: int) -> list[int]:
    return sorted(random.Random(f"{writer}-{number}").sample(range(KEYS), size))


def batch(writer: int, number: int, size: int) -> pa.Table:
    keys = batch_rows(writer, number, size)
    run = f"w{writer}-b{number}"
    return pa.table(
        {
            "k": pa.array(keys, pa.int64()),
            "bucket": pa.array([k % 4 for k in keys], pa.int64()),  # a key never changes bucket
            "written_by": pa.array([run] * len(keys)),
            INGESTED_AT: pa.array([None] * len(keys), pa.timestamp("us", tz="UTC")),
        }
    )


@dataclass(frozen=True)
class Job:
    catalog_name: str
    properties: dict[str, str]
    writer: int
    batches: int
    size: int
    attempts: int
    lock: bool = True  # as cascade.run does; False measures optimistic commits alone


def warm_up(_: int) -> None:
    import pyiceberg.catalog.sql  # noqa: F401

    import cascade.merge  # noqa: F401


def write(job: Job) -> list[int]:
    """One writer process: merge its batches in order; return each merge's commit attempts."""
    table = load_catalog(job.catalog_name, **job.properties).load_table("lake.events")
    attempts = []
    for number in range(job.batches):
        with writer_lock(table, "main", wait_seconds=60 if job.lock else 0) as locked:
            outcome = merge_into(
                table.refresh() if locked else table,
                batch(job.writer, number, job.size),
                "k",
                snapshot_properties={RUN_ID: f"w{job.writer}-b{number}"},
                stable_partitions=True,
                max_attempts=job.attempts,
            )
        assert outcome.committed
        attempts.append(outcome.commit_attempts)
    return attempts


def run_writers(
    pool: Pool, config: CascadeConfig, writers: int, batches: int, size: int, attempts: int, lock: bool = True
) -> dict[str, Any]:
    catalog = open_catalog(config)
    catalog.create_namespace_if_not_exists("lake")
    table = catalog.create_table("lake.events", schema=SCHEMA, partition_spec=BY_BUCKET)
    properties = dict(config.catalog)
    if properties["uri"].startswith("sqlite"):
        properties["uri"] += "?timeout=30"
    jobs = [Job(config.catalog_name, properties, w, batches, size, attempts, lock) for w in range(writers)]
    started = time.perf_counter()  # in processes that have done their imports: the merges alone
    per_writer = pool.map(write, jobs, chunksize=1)
    seconds = time.perf_counter() - started

    table = table.refresh()
    commits = []  # run ids, oldest first, along main's ancestry
    snapshot = table.current_snapshot()
    while snapshot is not None:
        if snapshot.summary is not None and RUN_ID in snapshot.summary.additional_properties:
            commits.append(snapshot.summary[RUN_ID])
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    commits.reverse()
    model: dict[int, str] = {}
    for run in commits:  # replay in commit order: the last committer wins each key
        writer, number = (int(part[1:]) for part in run.split("-"))
        model.update(dict.fromkeys(batch_rows(writer, number, size), run))
    rows = table.scan().to_arrow()
    attempts_made = [a for writer in per_writer for a in writer]
    return {
        "rows": dict(zip(rows.column("k").to_pylist(), rows.column("written_by").to_pylist(), strict=True)),
        "row_count": rows.num_rows,
        "model": model,
        "commits": commits,
        "attempts": attempts_made,
        "seconds": seconds,
    }


def assert_no_lost_update_and_no_duplicate(outcome: dict[str, Any], writers: int, batches: int) -> None:
    assert sorted(outcome["commits"]) == sorted(f"w{w}-b{b}" for w in range(writers) for b in range(batches))
    assert outcome["row_count"] == len(outcome["rows"])  # one row per key
    assert outcome["rows"] == outcome["model"]
    conflicts = sum(a - 1 for a in outcome["attempts"])
    print(
        f"\n{writers} writers x {batches} batches: {len(outcome['commits'])} commits, "
        f"{conflicts} conflicts re-planned, most attempts for one merge {max(outcome['attempts'])}"
    )


# As cascade.run does (the writer lock), 8 x 3 batches: every writer waits its turn several times;
# without the lock every commit races the other seven and most re-plan, so 8 x 2 batches already
# give a dozen or more lost races to recover from.
@pytest.mark.parametrize(("lock", "batches"), [(True, 3), (False, 2)], ids=["writer-lock", "optimistic-only"])
def test_eight_processes_on_postgres_and_s3(
    writer_processes: WriterProcesses, shared_servers: Any, catalog_name: str, tmp_path: Path, lock: bool, batches: int
) -> None:
    from tests.conftest import shared_properties

    config = CascadeConfig(
        home=tmp_path, catalog_name=catalog_name, catalog_properties=shared_properties(shared_servers, catalog_name)
    )
    attempts = config.commit_attempts
    outcome = run_writers(
        writer_processes.at_least(8), config, writers=8, batches=batches, size=150, attempts=attempts, lock=lock
    )
    assert_no_lost_update_and_no_duplicate(outcome, 8, batches)
    if lock:
        assert max(outcome["attempts"]) == 1  # with the per-table writer lock nobody loses a race


def test_two_processes_on_the_embedded_sqlite_catalog(writer_processes: WriterProcesses, tmp_path: Path) -> None:
    config = CascadeConfig(home=tmp_path / "cascade")
    outcome = run_writers(
        writer_processes.at_least(2), config, writers=2, batches=5, size=150, attempts=config.commit_attempts
    )
    assert_no_lost_update_and_no_duplicate(outcome, 2, 5)
