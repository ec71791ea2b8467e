"""Merge benchmark: ``cascade.merge_into`` against the alternatives, same data, same run.

Each (case, method) runs in a fresh process on a copy of the same starting table; the copy and
the reading of the batch are not timed. Methods:
  cascade   cascade.merge_into (partition-, key-range- and key-column-pruned, one snapshot)
  upsert    pyiceberg Table.upsert with the de-duplicated batch
  dlt       dlt's Iceberg route: filesystem destination, table_format="iceberg", merge/upsert
  append    Table.append of the batch (no de-duplication: the floor)
  parquet   pyarrow.parquet.write_table of the batch (the I/O floor)

    python bench/merge.py            # the full cases (minutes; needs ~3 GB of disk)
    python bench/merge.py --smoke    # tiny sizes, every case and method once (seconds)

Starting tables are laid out chronologically, as per-day ingestion leaves them: each append
(about 1M rows) holds a run of consecutive days, so a manifest covers a range of days.

Prints a table of wall seconds and peak RSS, and the ratios the targets are stated in.
Nothing is asserted: read the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

ROOT = Path(os.environ.get("CASCADE_BENCH_DIR", "/tmp/cascade-bench"))
METHODS = ("cascade", "upsert", "dlt", "append", "parquet")
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Case:
    name: str
    rows: int
    days: int
    batch: int
    partitioned: bool = True
    stable: bool = True
    spread: bool = False  # updates spread over all days instead of two
    wide: bool = False


FULL = (
    Case("part-1M", 1_000_000, 30, 100_000),
    Case("part-10M-300d", 10_000_000, 300, 100_000),
    Case("part-10M-300d-unstable", 10_000_000, 300, 100_000, stable=False),
    Case("part-1M-spread", 1_000_000, 30, 100_000, spread=True),
    Case("unpart-1M", 1_000_000, 30, 100_000, partitioned=False),
    Case("wide-1M", 1_000_000, 30, 100_000, wide=True),
    Case("part-1M-batch-1M", 1_000_000, 30, 1_000_000, spread=True),
)
SMOKE = tuple(
    Case(
        c.name.replace("1M", "2k").replace("10M", "5k"),
        2_000 if "1M" in c.name else 5_000,
        c.days,
        500,
        c.partitioned,
        c.stable,
        c.spread,
        c.wide,
    )
    for c in FULL
)
SKIP = {("dlt", "part-10M-300d"), ("dlt", "part-10M-300d-unstable")}  # dlt cannot finish the 1M case in minutes


def columns(case: Case, ids, version: int):
    """Rows for the given ids (a range or an int64 array); row ``i`` falls on day ``i % days``."""
    import numpy as np
    import pyarrow as pa

    index = np.arange(ids.start, ids.stop, dtype=np.int64) if isinstance(ids, range) else ids
    day = index % case.days
    ts = (START.timestamp() * 1e6 + day * 86_400e6 + (index // case.days) % 86_400 * 1e6).astype("int64")
    data = {
        "id": pa.array([f"id-{i:09d}" for i in index]),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "v": pa.array(np.sin(index * 0.001) + version, pa.float64()),
        "n": pa.array(index * 7 % 1000, pa.int64()),
        "s": pa.array([f"station-{i % 97}" for i in index]),
    }
    if case.wide:
        for c in range(45):
            data[f"w{c:02d}"] = pa.array(np.cos(index * (c + 1) * 1e-4), pa.float64())
    return pa.table(data)


def schema(case: Case):
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType

    fields = [
        NestedField(1, "id", StringType(), required=False),
        NestedField(2, "ts", TimestamptzType(), required=False),
        NestedField(3, "v", DoubleType(), required=False),
        NestedField(4, "n", LongType(), required=False),
        NestedField(5, "s", StringType(), required=False),
    ]
    if case.wide:
        fields += [NestedField(10 + c, f"w{c:02d}", DoubleType(), required=False) for c in range(45)]
    return Schema(*fields)


def make_batch(case: Case):
    """Half updates of existing rows (two days, or spread over all), half new rows in the same days."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    half = case.batch // 2
    if case.spread:
        updated = np.linspace(0, case.rows - 1, half, dtype=np.int64)
    else:  # rows of days 3 and 17 (id % days picks the day)
        per_day = half // 2
        updated = np.concatenate([np.arange(d, case.rows, case.days)[:per_day] for d in (3, 17 % case.days)])
    updates = columns(case, updated, 1)
    new = columns(case, range(case.rows, case.rows + half * case.days), 1)
    days = pc.cast(
        pc.divide(pc.subtract(pc.cast(new["ts"], pa.int64()), int(START.timestamp() * 1e6)), 86_400_000_000), pa.int64()
    )
    if not case.spread:
        new = new.filter(pc.is_in(days, pa.array([3, 17 % case.days])))
    return pa.concat_tables([updates, new.slice(0, half)])


def catalog(folder: Path):
    from pyiceberg.catalog.sql import SqlCatalog

    (folder / "wh").mkdir(parents=True, exist_ok=True)
    return SqlCatalog("bench", uri=f"sqlite:///{folder / 'catalog.db'}", warehouse=(folder / "wh").as_uri())


def build(case: Case, folder: Path) -> None:
    """The starting table (Iceberg and dlt's own), and the batch as parquet."""
    import pyarrow.parquet as pq
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec = (
        PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="ts_day"))
        if case.partitioned
        else UNPARTITIONED_PARTITION_SPEC
    )
    cat = catalog(folder)
    cat.create_namespace("bench")
    table = cat.create_table("bench.t", schema=schema(case), partition_spec=spec)
    # chronological, as per-day ingestion lays a table out: each append holds a run of days
    import numpy as np

    ids = np.arange(case.rows, dtype=np.int64)
    days_per_append = max(1, case.days * 1_000_000 // max(case.rows, 1))
    for first_day in range(0, case.days, days_per_append):
        day = ids % case.days
        table.append(columns(case, ids[(day >= first_day) & (day < first_day + days_per_append)], 0))
    pq.write_table(make_batch(case), folder / "batch.parquet")
    if ("dlt", case.name) not in SKIP:
        dlt_pipeline(folder, case).run(
            columns(case, range(0, case.rows), 0), table_name="t", loader_file_format="parquet"
        )


def dlt_pipeline(folder: Path, case: Case):
    import dlt

    return dlt.pipeline(
        pipeline_name="bench",
        pipelines_dir=str(folder / "dlt_pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(folder / "dlt_lake").as_uri()),
        dataset_name="bench",
    )


def child(method: str, case: Case, folder: Path) -> dict:
    """Run one method on the starting table; returns seconds and peak RSS (MB)."""
    import dlt
    import pyarrow.parquet as pq

    from cascade import merge_into  # imported before the clock starts, like the other methods' code

    batch = pq.read_table(folder / "batch.parquet")
    table = catalog(folder).load_table("bench.t")
    started = time.perf_counter()
    if method == "cascade":
        outcome = merge_into(table, batch, "id", stable_partitions=case.stable)
        detail = {k: v for k, v in asdict(outcome).items() if k.startswith(("rows_", "files_", "bytes_"))}
    elif method == "upsert":
        result = table.upsert(batch, join_cols=["id"])
        detail = {"rows_updated": result.rows_updated, "rows_inserted": result.rows_inserted}
    elif method == "append":
        table.append(batch)
        detail = {}
    elif method == "parquet":
        pq.write_table(batch, folder / "floor.parquet")
        detail = {}
    elif method == "dlt":
        upserted = dlt.resource(
            batch,
            name="t",
            primary_key="id",
            table_format="iceberg",
            write_disposition={"disposition": "merge", "strategy": "upsert"},
        )
        dlt_pipeline(folder, case).run(upserted, loader_file_format="parquet")
        detail = {}
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_mb": peak_rss_mb(), **detail}


def peak_rss_mb() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that across exec from the parent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: Case, methods: tuple[str, ...], timeout: float) -> dict[str, dict]:
    pristine = ROOT / f"{case.name}.pristine"
    print(f"building {case.name} ({case.rows:,} rows, batch {case.batch:,}) ...", file=sys.stderr, flush=True)
    build(case, pristine)
    results: dict[str, dict] = {}
    for method in methods:
        if (method, case.name) in SKIP:
            results[method] = {"skipped": True}
            continue
        # run in place (metadata holds absolute paths) and restore the starting table afterwards
        backup = pristine.with_suffix(".backup")
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(pristine, backup)
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--child", method, "--case", case.name, "--dir", str(pristine)]
                + (["--smoke"] if case in SMOKE else []),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if done.returncode == 0:
                results[method] = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                results[method] = {"error": done.stderr.strip().splitlines()[-1][:120]}
        except subprocess.TimeoutExpired:
            results[method] = {"timeout": timeout}
        finally:
            shutil.rmtree(pristine, ignore_errors=True)
            backup.rename(pristine)
        print(f"  {method}: {results[method]}", file=sys.stderr, flush=True)
    shutil.rmtree(pristine, ignore_errors=True)
    return results


def cell(result: dict) -> str:
    if "seconds" in result:
        return f"{result['seconds']:8.2f} s {result['rss_mb']:6.0f} MB"
    if "timeout" in result:
        return f"> {result['timeout']:.0f} s (stopped)"
    return "skipped" if result.get("skipped") else f"error: {result.get('error', '?')[:40]}"


def ratio(results: dict, slower: str, faster: str = "cascade") -> str:
    a, b = results.get(slower, {}), results.get(faster, {})
    if "seconds" in b and ("seconds" in a or "timeout" in a):
        value = a.get("seconds", a.get("timeout")) / b["seconds"]
        return f"{'>' if 'timeout' in a else ''}{value:.1f}x"
    return "-"


def report(all_results: dict[str, dict[str, dict]], methods: tuple[str, ...]) -> None:
    print()
    print("| case | " + " | ".join(methods) + " | upsert/cascade | dlt/cascade | cascade/append |")
    print("|---" * (len(methods) + 4) + "|")
    for name, results in all_results.items():
        cells = [cell(results.get(m, {"skipped": True})) for m in methods]
        cascade = results.get("cascade", {})
        append = results.get("append", {})
        over_append = (
            f"{cascade['seconds'] / append['seconds']:.1f}x" if "seconds" in cascade and "seconds" in append else "-"
        )
        print(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {ratio(results, 'upsert')} | {ratio(results, 'dlt')} | {over_append} |"
        )
    print()
    for name, results in all_results.items():
        detail = {k: v for k, v in results.get("cascade", {}).items() if k not in ("seconds", "rss_mb")}
        print(f"cascade on {name}: {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--cases", nargs="*")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--child")
    parser.add_argument("--case")
    parser.add_argument("--dir")
    args = parser.parse_args()
    cases = {c.name: c for c in (SMOKE if args.smoke else FULL)}
    if args.child:
        print(json.dumps(child(args.child, cases[args.case], Path(args.dir))))
        return
    chosen = [cases[n] for n in args.cases] if args.cases else list(cases.values())
    methods = tuple(args.methods)
    results = {case.name: run_case(case, methods, args.timeout) for case in chosen}
    report(results, methods)


if __name__ == "__main__":
    main()
