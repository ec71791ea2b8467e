"""Status benchmark: how long does ``cascade status`` take over a long history?

Builds, on a fresh embedded catalog, a table with one committed snapshot per day for ``--days``
days (each summary carrying Cascade's run properties, as ``cascade.run`` writes them; see ``build``), with every
``--gap-every``-th day never run and every ``--fail-every``-th day failed in a run log
(``cascade.runs``, one append per run, written by the run-log plugin's code). Then it measures:

  status (in process)   reading the table and the run log, judging every day, rendering the
                        calendar and the JSON: ``cascade_cli.status.collect`` and friends
  cascade status        the whole command in a fresh process (interpreter start and imports included)

each on the full history and again after expiry left ``--retain-last`` snapshots (the rest read
from the coverage ledger). Prints the median of ``--repeat`` runs. Nothing is asserted.

    python bench/status.py                # 1,000 days (a few minutes to build)
    python bench/status.py --days 60      # a quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")  # only the benchmark's asset

ASSET = "bench_readings"
SUMMARIES: set[str] = set()  # what status said, printed once: the figures are of a correct answer


def define_asset(days: int) -> Any:
    """The asset, declared as a plugin module should (dlt is imported when the asset runs)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType

    from cascade import cascade_ingestion

    @cascade_ingestion(
        table_name="readings",
        unique_key="id",
        iceberg_schema=Schema(
            NestedField(1, "id", StringType(), required=False), NestedField(2, "v", LongType(), required=False)
        ),
        group="bench",
        cron="0 6 * * *",
        freshness_hours=(24, 48),
        start_date=dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days - 1),
    )
    def bench_readings(partition_date: str) -> Any:
        import dlt

        return dlt.resource([{"id": partition_date, "v": 1}], name="readings")

    return bench_readings


def build(days: int, gap_every: int, fail_every: int) -> tuple[int, int]:
    """The planted history; returns (days committed, days failed).

    The first day is committed for real, last (so it reads as an old day's backfill); every
    other day becomes a snapshot of its own, with Cascade's run properties and a time of the
    next morning, all added in one metadata commit and sharing the first day's manifest list:
    ``cascade status`` reads summaries, never manifests, and a thousand real commits would take
    most of an hour on a shared machine measuring pyiceberg's commit cost (``bench/history.py``
    covers that). The run log gets one append per run, written by the run-log plugin's own code.
    """
    import pyarrow as pa
    from cascade_runlog.plugin import RUNS_PROPERTIES, RUNS_TABLE, append_record, runs_schema
    from pyiceberg.table.snapshots import Operation, Snapshot, Summary
    from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetSnapshotRefUpdate

    from cascade import load_config
    from cascade.catalog import load_or_create_table, open_catalog

    asset = define_asset(days)
    config = load_config()
    catalog = open_catalog(config)
    catalog.create_namespace_if_not_exists("bench")
    table = catalog.create_table("bench.readings", asset.spec.table_schema)
    first = asset.spec.start_date
    now = dt.datetime.now(dt.UTC)
    plan = []  # (day, run id, committed)
    for n in range(days):
        if gap_every and n % gap_every == gap_every - 1:
            continue
        plan.append(((first + dt.timedelta(days=n)).isoformat(), f"run{n:05d}", n % fail_every != fail_every - 2))

    def properties(day: str, run_id: str) -> dict[str, str]:
        return {"cascade.run-id": run_id, "cascade.asset": ASSET, "cascade.partition": day, "cascade.branch": "main"}

    root_day, root_run, _ = plan[0]
    first_row = {"id": root_day, "v": 1, "_cascade_ingested_at": now}
    row = pa.Table.from_pylist([first_row], schema=table.schema().as_arrow())
    table.append(row, snapshot_properties=properties(root_day, root_run))
    root = table.current_snapshot()
    assert root is not None and root.sequence_number is not None
    parent, sequence, updates = root.snapshot_id, root.sequence_number, []
    for day, run_id, ok in plan[1:]:
        if not ok:
            continue
        sequence += 1
        at = min(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(days=1, hours=6, minutes=5), now)
        snapshot = Snapshot(  # type: ignore[call-arg]
            snapshot_id=table.metadata.new_snapshot_id(),
            parent_snapshot_id=parent,
            sequence_number=sequence,
            timestamp_ms=int(at.timestamp() * 1000) - 60_000,
            manifest_list=root.manifest_list,
            summary=Summary(Operation.APPEND, **{"added-records": "1", **properties(day, run_id)}),
            schema_id=table.metadata.current_schema_id,
        )
        updates.append(AddSnapshotUpdate(snapshot=snapshot))
        parent = snapshot.snapshot_id
    updates.append(SetSnapshotRefUpdate(snapshot_id=parent, ref_name="main", type="branch"))  # type: ignore[call-arg]
    guard = AssertRefSnapshotId(snapshot_id=root.snapshot_id, ref="main")  # type: ignore[call-arg]
    table._do_commit(updates=tuple(updates), requirements=(guard,))

    runs = load_or_create_table(catalog, RUNS_TABLE, runs_schema(), properties=RUNS_PROPERTIES)
    for number, (day, run_id, ok) in enumerate(plan):  # one append per run, as the plugin writes it
        append_record(
            runs,
            {
                "run_id": run_id,
                "asset": ASSET,
                "partition": day,
                "branch": "main",
                "status": "succeeded" if ok else "failed",
                "committed": ok,
                "error_class": None if ok else "SourceError",
                "error_message": None if ok else f"asset {ASSET!r}, partition {day}: HTTP 500",
                "finished_at": now - dt.timedelta(days=len(plan) - number),
            },
        )
    return sum(ok for _, _, ok in plan), sum(not ok for _, _, ok in plan)


def in_process(days: int) -> float:
    """Seconds for the status of the asset: read, judge, render the calendar and the JSON."""
    from rich.console import Console

    from cascade_cli.status import collect, print_status

    started = time.perf_counter()
    statuses = collect([ASSET], since=None, branch=None, now=dt.datetime.now(dt.UTC))
    json.dumps([s.as_dict() for s in statuses])
    console = Console(file=io.StringIO(), width=120)
    for status in statuses:
        print_status(console, status, weeks=26)
    elapsed = time.perf_counter() - started
    assert len(statuses[0].days) == days
    SUMMARIES.add(statuses[0].summary().split(", last run")[0])
    return elapsed


def whole_command(workdir: Path, days: int, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--run-status", "--days", str(days), *extra],
        cwd=workdir,
        check=False,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=1_000)
    parser.add_argument("--gap-every", type=int, default=50)
    parser.add_argument("--fail-every", type=int, default=40)
    parser.add_argument("--retain-last", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--run-status", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--import-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_status and args.import_only:  # the baseline: a process that only imports the CLI
        import cascade_cli.main  # noqa: F401

        return
    if args.run_status:  # the child process of whole_command: the real command on the benchmark's asset
        define_asset(args.days)
        from cascade_cli.main import main as cascade_main

        sys.argv = ["cascade", "status", ASSET]
        cascade_main()
        return

    with tempfile.TemporaryDirectory(prefix="cascade-bench-status-") as folder:
        workdir = Path(folder)
        (workdir / "cascade.toml").write_text('[cascade]\nhome = "cascade"\n')
        os.chdir(workdir)
        started = time.perf_counter()
        committed, failed = build(args.days, args.gap_every, args.fail_every)
        seconds = time.perf_counter() - started
        print(f"built {args.days} days ({committed} committed, {failed} failed) in {seconds:.0f} s")
        rows = []
        for label in ("full history", f"after expiry (last {args.retain_last} kept)"):
            if label.startswith("after"):
                from cascade import load_config
                from cascade.catalog import open_catalog
                from cascade.maintenance import expire_snapshots

                table = open_catalog(load_config()).load_table("bench.readings")
                expire_snapshots(table, older_than=dt.timedelta(0), retain_last=args.retain_last)
            inside = [in_process(args.days) for _ in range(args.repeat)]
            whole = [whole_command(workdir, args.days) for _ in range(args.repeat)]
            rows.append((label, statistics.median(inside), statistics.median(whole)))
        imports = statistics.median(whole_command(workdir, args.days, "--import-only") for _ in range(args.repeat))
    print(f"\n{'history':<34} {'status in process (s)':>22} {'cascade status (s)':>19}")
    for label, inside_s, whole_s in rows:
        print(f"{label:<34} {inside_s:>22.3f} {whole_s:>19.3f}")
    print(f"{'(a process importing cascade_cli)':<34} {'':>22} {imports:>19.3f}")
    print("status said: " + " | ".join(sorted(SUMMARIES)))


if __name__ == "__main__":
    main()
