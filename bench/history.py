"""History benchmark: does a merge stay as fast on a table's 2,000th run as on its first?

Two shapes of a glucose-like table (8 columns, day partitions, key ``_id``), each in a fresh
process on a fresh embedded catalog:
  hourly   24 runs a day; each merges the day's 288 readings, of which the current hour's 12
           are revised (12 updated, 276 unchanged; the day's file is rewritten)
  daily    one run a day; each merges a new day's 288 readings (288 inserted, a new file)
and two ways in:
  merge_into   cascade.merge_into on a table Cascade created (the merge engine alone)
  run          cascade.run of a real asset whose function returns a dlt resource (the whole run:
               extract, stage, validate, merge, commit; a fresh catalog and table load per run)

    python bench/history.py                      # 2,000 hourly and 1,000 daily runs, both ways (long)
    python bench/history.py --smoke              # 40 hourly and 20 daily runs, windows of 10
    python bench/history.py --shapes hourly --ways merge_into --runs 600
    python bench/history.py --property commit.manifest.min-count-to-merge=20

Prints, per window of runs (default 100): the median merge seconds, wall and CPU (for ``run``, of
the whole run, and the merge phase's wall seconds); CPU seconds of this process are the steadier
figure on a shared machine, manifests in the current snapshot, the current metadata file's size,
metadata files on disk, the snapshot's live data files and the data files on disk. Nothing is
asserted: read the figures. Hook plugins are not loaded (``CASCADE_DISABLE_PLUGIN_AUTOLOAD``).

Maintenance plugs in through ``MAINTENANCE``: a named callback given the table after every
``--maintain-every`` runs (default: none registered, so no maintenance runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")  # Cascade's cost, not installed hook plugins'

SHAPES = ("hourly", "daily")
WAYS = ("merge_into", "run")
FULL_RUNS = {"hourly": 2_000, "daily": 1_000}
SMOKE_RUNS = {"hourly": 40, "daily": 20}
READINGS_PER_DAY = 288
FIRST_DAY = dt.date(2024, 1, 1)
DIRECTIONS = ("Flat", "FortyFiveUp", "FortyFiveDown", "SingleUp", "SingleDown")

Maintenance = Callable[[Any], None]
"""Given the pyiceberg ``Table`` after every N runs; whatever it does is timed apart from the merges."""


def _default_maintenance(table: Any) -> None:
    """What ``cascade maintain --compact --rewrite-manifests`` does with the default policy."""
    from cascade.maintenance import maintain
    from cascade.maintenance_policy import MaintenancePolicy

    maintain(table, MaintenancePolicy(compact=True, rewrite_manifests=True))


MAINTENANCE: dict[str, Maintenance] = {"default": _default_maintenance}
"""Named maintenance variants, run every ``--maintain-every`` runs."""


@dataclass(frozen=True)
class Window:
    """Figures for one window of runs, measured after its last run."""

    last_run: int
    median_seconds: float
    median_cpu_seconds: float
    median_merge_seconds: float
    manifests: int
    metadata_bytes: int
    metadata_files: int
    live_files: int
    data_files: int
    snapshots: int
    maintenance_seconds: float


def readings(day: int, revised_hours: int) -> dict[str, list[Any]]:
    """Day ``day``'s 288 readings; the first ``revised_hours`` hours carry their revised value."""
    start = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=day), dt.time(), dt.UTC)
    stamps = [start + dt.timedelta(minutes=5 * slot) for slot in range(READINGS_PER_DAY)]
    base = [80 + (day * 37 + slot * 7) % 160 for slot in range(READINGS_PER_DAY)]
    sgv = [value + (1 if slot // 12 < revised_hours else 0) for slot, value in enumerate(base)]
    return {
        "_id": [f"{s:%Y%m%dT%H%M}-cgm" for s in stamps],
        "date": [int(s.timestamp() * 1000) for s in stamps],
        "date_string": stamps,
        "sgv": sgv,
        "delta": [float(sgv[i] - sgv[i - 1]) if i else 0.0 for i in range(READINGS_PER_DAY)],
        "direction": [DIRECTIONS[v % len(DIRECTIONS)] for v in sgv],
        "device": ["xDrip-DexcomG6"] * READINGS_PER_DAY,
        "type": ["sgv"] * READINGS_PER_DAY,
    }


def schedule(shape: str, runs: int) -> Iterator[tuple[int, int]]:
    """(day, revised hours) per run: hourly revises one more hour per run; daily is a new day each run."""
    for run in range(runs):
        yield (run // 24, run % 24 + 1) if shape == "hourly" else (run, 24)


def bench_asset() -> Any:
    """The asset ``cascade.run`` ingests: a dlt resource of the readings the run's tags ask for."""
    import dlt

    from cascade import RunContext, cascade_ingestion
    from cascade_nightscout.schemas import GLUCOSE_PARTITIONING, GLUCOSE_SCHEMA

    @cascade_ingestion(
        table_name="glucose",
        unique_key="_id",
        iceberg_schema=GLUCOSE_SCHEMA,
        partition_spec=GLUCOSE_PARTITIONING,
        stable_partitions=True,
        group="bench",
    )
    def history_glucose(partition_date: str, context: RunContext) -> Any:
        """Readings generated in process: the merge is measured, not an HTTP server."""
        day = (dt.date.fromisoformat(partition_date) - FIRST_DAY).days
        columns = readings(day, int(context.tags["bench/revised-hours"]))
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return dlt.resource(rows, name="glucose")

    return history_glucose


def table_figures(table: Any) -> dict[str, int]:
    """Manifests of the current snapshot, metadata file size, files on disk, snapshots."""
    location = Path(table.location().removeprefix("file://"))
    snapshot = table.current_snapshot()
    return {
        "manifests": len(snapshot.manifests(table.io)) if snapshot else 0,
        "metadata_bytes": Path(table.metadata_location.removeprefix("file://")).stat().st_size,
        "metadata_files": sum(1 for _ in (location / "metadata").glob("*.metadata.json")),
        "live_files": int(snapshot.summary["total-data-files"]) if snapshot and snapshot.summary else 0,
        "data_files": sum(1 for p in (location / "data").rglob("*.parquet")),
        "snapshots": len(table.metadata.snapshots),
    }


def child(shape: str, way: str, runs: int, every: int, folder: Path, args: argparse.Namespace) -> list[Window]:
    import pyarrow as pa

    import cascade
    from cascade.catalog import ensure_table, open_catalog, table_identifier

    properties = dict(p.split("=", 1) for p in args.property)
    maintenance = MAINTENANCE[args.maintenance] if args.maintenance else None
    config = cascade.CascadeConfig(home=folder / "cascade", log_level="WARNING")
    asset = bench_asset()
    catalog = open_catalog(config)
    table = ensure_table(catalog, table_identifier(asset.spec, config), asset.spec)
    if properties:
        table.transaction().set_properties(properties).commit_transaction()
    arrow_schema = asset.spec.table_schema.as_arrow()
    windows: list[Window] = []
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    merge_seconds: list[float] = []
    maintenance_seconds = 0.0
    for run, (day, revised) in enumerate(schedule(shape, runs), start=1):
        if way == "merge_into":
            columns = readings(day, revised)
            stamp = dt.datetime.now(dt.UTC)
            batch = pa.table({**columns, cascade.INGESTED_AT: [stamp] * READINGS_PER_DAY}, schema=arrow_schema)
            started, cpu = time.perf_counter(), time.process_time()
            cascade.merge_into(table, batch, "_id", stable_partitions=True)
            seconds.append(time.perf_counter() - started)
            cpu_seconds.append(time.process_time() - cpu)
            merge_seconds.append(seconds[-1])
        else:
            date = (FIRST_DAY + dt.timedelta(days=day)).isoformat()
            started, cpu = time.perf_counter(), time.process_time()
            result = cascade.run(asset, date, config=config, tags={"bench/revised-hours": str(revised)})
            seconds.append(time.perf_counter() - started)
            cpu_seconds.append(time.process_time() - cpu)
            merge_seconds.append(result.phase_seconds["merge"])
        if maintenance is not None and run % args.maintain_every == 0:
            started = time.perf_counter()
            maintenance(table.refresh())
            maintenance_seconds += time.perf_counter() - started
        if run % every == 0 or run == runs:
            figures = table_figures(table.refresh())
            windows.append(
                Window(
                    last_run=run,
                    median_seconds=statistics.median(seconds),
                    median_cpu_seconds=statistics.median(cpu_seconds),
                    median_merge_seconds=statistics.median(merge_seconds),
                    maintenance_seconds=maintenance_seconds,
                    **figures,
                )
            )
            print(f"{shape} {way}: {windows[-1]}", file=sys.stderr, flush=True)
            seconds, cpu_seconds, merge_seconds, maintenance_seconds = [], [], [], 0.0
    return windows


def print_table(shape: str, way: str, windows: list[Window]) -> None:
    first = windows[0]
    print(f"\n{shape} shape, {way}:")
    merge_column = " | merge phase s" if way == "run" else ""
    print(
        f"| runs | median s | vs first{merge_column} | median CPU s | vs first | manifests | metadata.json KB "
        "| metadata files | live files | files on disk | snapshots | maintenance s |"
    )
    print("|---:|---:|---:|" + ("---:|" if way == "run" else "") + "---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    start = 1
    for w in windows:
        merge = f" | {w.median_merge_seconds:.3f}" if way == "run" else ""
        print(
            f"| {start}-{w.last_run} | {w.median_seconds:.3f} | {w.median_seconds / first.median_seconds:.2f}x{merge} "
            f"| {w.median_cpu_seconds:.3f} | {w.median_cpu_seconds / first.median_cpu_seconds:.2f}x "
            f"| {w.manifests} | {w.metadata_bytes / 1024:,.0f} | {w.metadata_files} | {w.live_files} | {w.data_files} "
            f"| {w.snapshots} | {w.maintenance_seconds:.2f} |"
        )
        start = w.last_run + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="40 hourly and 20 daily runs, windows of 10")
    parser.add_argument("--shapes", nargs="*", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--ways", nargs="*", choices=WAYS, default=list(WAYS))
    parser.add_argument("--runs", type=int, help="runs per shape (default: 2,000 hourly, 1,000 daily)")
    parser.add_argument("--every", type=int, help="runs per printed window (default 100; 10 with --smoke)")
    parser.add_argument("--property", action="append", default=[], help="table property KEY=VALUE, set at creation")
    parser.add_argument("--maintenance", choices=sorted(MAINTENANCE), help="a registered maintenance variant")
    parser.add_argument("--maintain-every", type=int, default=100, help="runs between maintenance calls")
    parser.add_argument("--child", nargs=2, metavar=("SHAPE", "WAY"))
    parser.add_argument("--dir")
    args = parser.parse_args()
    every = args.every or (10 if args.smoke else 100)
    if args.child:
        shape, way = args.child
        runs = args.runs or (SMOKE_RUNS if args.smoke else FULL_RUNS)[shape]
        print(json.dumps([asdict(w) for w in child(shape, way, runs, every, Path(args.dir), args)]))
        return
    passed = [*(["--smoke"] if args.smoke else []), *(["--runs", str(args.runs)] if args.runs else [])]
    passed += ["--every", str(every), "--maintain-every", str(args.maintain_every)]
    passed += [f"--property={p}" for p in args.property]
    passed += ["--maintenance", args.maintenance] if args.maintenance else []
    for shape in args.shapes:
        for way in args.ways:
            with tempfile.TemporaryDirectory() as folder:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", shape, way, "--dir", folder, *passed],
                    stdout=subprocess.PIPE,
                    text=True,
                    check=False,
                )
            if done.returncode != 0:
                raise SystemExit(f"{shape} {way} failed (exit {done.returncode})")
            windows = [Window(**w) for w in json.loads(done.stdout.strip().splitlines()[-1])]
            print_table(shape, way, windows)


if __name__ == "__main__":
    main()
