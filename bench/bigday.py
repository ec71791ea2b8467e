"""Big partitions: one day of N rows through ``cascade.run`` beside dlt alone writing parquet.

Sources, generated in the child process (nothing is downloaded):
  arrow   3 columns (id, value, at) as Arrow tables of 50,000 rows: 1M, 5M and 10M rows
  arrow-shuffled  the same with the ids in random order (UUID-like keys give every staged
          file a key range as wide as the day's), at the largest size: with --shuffled
  json    20 columns as dicts, as most REST APIs give: 1M rows

Each method runs in a fresh process on a fresh folder (Cascade without the hook plugins installed
beside it: ``CASCADE_DISABLE_PLUGIN_AUTOLOAD``); the script prints wall seconds and peak
RSS (VmHWM) of each, the ratios, Cascade's per-phase seconds, and how long a new process takes
here to first touch fresh memory (see ``fresh_memory_ms``). Nothing is asserted. With
``--repeat N`` each case is measured N times, the two methods taking turns to go first, and the
medians are printed with the range of the N paired time ratios (a shared machine's speed drifts
by more than the differences measured here).

    python bench/bigday.py [--sizes 1000000 5000000 10000000] [--json-rows 1000000] [--shuffled] [--smoke]
                           [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DAY = "2024-06-01"
CHUNK = 50_000
JSON_COLUMNS = 20


def peak_rss_mb() -> float:
    """This process's peak RSS (not ru_maxrss: Linux carries that across exec from the parent)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def arrow_pages(rows: int, shuffled: bool = False) -> Any:
    import numpy as np
    import pyarrow as pa

    start = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    order = np.random.default_rng(1).permutation(rows) if shuffled else None
    for offset in range(0, rows, CHUNK):
        n = min(CHUNK, rows - offset)
        ids = pa.array(order[offset : offset + n] if order is not None else range(offset, offset + n), pa.int64())
        yield pa.table(
            {
                "id": ids,
                "value": pa.array([float(i % 1000) for i in range(offset, offset + n)], pa.float64()),
                "at": pa.array([start] * n, pa.timestamp("us", tz="UTC")),
            }
        )


def json_records(rows: int) -> Any:
    at = "2024-06-01T12:00:00+00:00"
    for i in range(rows):
        record: dict[str, Any] = {"id": i, "at": at}
        for c in range(JSON_COLUMNS - 2):
            record[f"c{c}"] = i * c if c % 3 == 0 else (f"text-{i % 97}-{c}" if c % 3 == 1 else i / 7)
        yield record


def schema(kind: str) -> Any:
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType

    fields = [NestedField(1, "id", LongType(), required=False), NestedField(2, "at", TimestamptzType())]
    if kind.startswith("arrow"):
        fields.append(NestedField(3, "value", DoubleType()))
    else:
        for c in range(JSON_COLUMNS - 2):
            kind_of = (LongType(), StringType(), DoubleType())[c % 3]
            fields.append(NestedField(3 + c, f"c{c}", kind_of, required=False))
    return Schema(*fields)


def child(method: str, kind: str, rows: int, folder: Path) -> dict[str, Any]:
    # Both methods run once on 10 rows first, in both children: the clock then measures the day,
    # not the imports and first-call set-up either method pays once per process.
    for warm_up in ("cascade", "dlt-parquet"):
        ingest(warm_up, kind, 10, folder / f"warm-up-{warm_up}")
    started = time.perf_counter()
    phases = ingest(method, kind, rows, folder / method)
    return {"seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb(), "phases": phases}


def ingest(method: str, kind: str, rows: int, folder: Path) -> dict[str, float]:
    """One day of ``rows`` through ``method``; Cascade's per-phase seconds."""
    import dlt

    import cascade

    source = arrow_pages(rows, shuffled=kind == "arrow-shuffled") if kind.startswith("arrow") else json_records(rows)
    if method == "cascade":

        @cascade.cascade_ingestion(table_name="big", unique_key="id", iceberg_schema=schema(kind), group="bench")
        def big(partition_date: str) -> Any:
            return dlt.resource(source, name="big")

        result = cascade.run(big, DAY, config=cascade.CascadeConfig(home=folder / "cascade"))
        assert result.rows_inserted == rows, result
        return dict(result.phase_seconds)
    pipeline = dlt.pipeline(
        pipeline_name="dlt_parquet",
        pipelines_dir=str(folder / "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(folder / "lake").as_uri()),
        dataset_name="bench",
    )
    pipeline.run(dlt.resource(source, name="big"), loader_file_format="parquet")
    return {}


def fresh_memory_ms(megabytes: int = 128) -> float:
    """Milliseconds a new process takes to first touch ``megabytes`` of Arrow memory.

    Both methods' times include such first touches, and on some machines (a VM whose host backs
    guest memory lazily, transparent huge pages compacted on fault) they cost 20x what they cost
    on others; the method that touches more memory then pays more. Printed so a reader can tell.
    """
    probe = (
        f"import time, numpy, pyarrow as pa; b = pa.allocate_buffer({megabytes * 2**20}); t = time.perf_counter(); "
        "numpy.frombuffer(b, dtype=numpy.uint8)[:] = 1; print((time.perf_counter() - t) * 1000)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def measure(method: str, kind: str, rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, __file__, "--child", method, "--kind", kind, "--rows", str(rows), "--dir", folder],
            capture_output=True,
            text=True,
            check=False,
            # Cascade as ``pip install cascade-core`` runs it: hook plugins installed beside it (the
            # run log's own Iceberg commit, the test plugins) are not loaded; their cost is theirs.
            env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "CASCADE_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{method} {kind} {rows} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds, RSS and phases of one method's runs (each taken on its own)."""
    middle = len(runs) // 2

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    phases = {p: median([r["phases"].get(p, 0.0) for r in runs]) for p in runs[0]["phases"]}
    return {
        "seconds": median([r["seconds"] for r in runs]),
        "rss_mb": median([r["rss_mb"] for r in runs]),
        "phases": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 5_000_000, 10_000_000])
    parser.add_argument("--json-rows", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="100,000 arrow rows and 20,000 json rows")
    parser.add_argument("--shuffled", action="store_true", help="also the largest size with its ids in random order")
    parser.add_argument("--repeat", type=int, default=1, help="measure each case this many times; print medians")
    parser.add_argument("--child")
    parser.add_argument("--kind")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--dir")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.kind, args.rows, Path(args.dir))))
        return
    cases = [("arrow", n) for n in ([100_000] if args.smoke else args.sizes)]
    if args.shuffled:
        cases.append(("arrow-shuffled", max(n for _, n in cases)))
    if args.smoke or args.json_rows:
        cases.append(("json", 20_000 if args.smoke else args.json_rows))
    probes = sorted(fresh_memory_ms() for _ in range(3))
    print(f"first touch of 128 MB of Arrow memory in a new process: {probes[0]:.0f} to {probes[-1]:.0f} ms", flush=True)
    rows_out = []
    for kind, rows in cases:
        runs: list[dict[str, Any]] = []
        for turn in range(args.repeat):
            methods = ("cascade", "dlt-parquet") if turn % 2 == 0 else ("dlt-parquet", "cascade")
            runs.append({method: measure(method, kind, rows) for method in methods})
            print(f"{kind} {rows:,}: {runs[-1]}", file=sys.stderr, flush=True)
        rows_out.append((kind, rows, runs))
    print()
    print(
        "| source | rows | cascade s | cascade MB | dlt->parquet s | dlt->parquet MB | time ratio | RSS ratio "
        "| paired time ratios |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, rows, runs in rows_out:
        c, d = median_run([r["cascade"] for r in runs]), median_run([r["dlt-parquet"] for r in runs])
        paired = sorted(r["cascade"]["seconds"] / r["dlt-parquet"]["seconds"] for r in runs)
        print(
            f"| {kind} | {rows:,} | {c['seconds']:.1f} | {c['rss_mb']:.0f} | {d['seconds']:.1f} | {d['rss_mb']:.0f} "
            f"| {c['seconds'] / d['seconds']:.2f}x | {c['rss_mb'] / d['rss_mb']:.2f}x "
            f"| {paired[0]:.2f}x to {paired[-1]:.2f}x |"
        )
    print()
    print("Cascade per phase (seconds):")
    print("| source | rows | " + " | ".join(("resolve", "extract", "stage", "validate", "merge")) + " |")
    print("|---|---|---|---|---|---|---|")
    for kind, rows, runs in rows_out:
        phases = median_run([r["cascade"] for r in runs])["phases"]
        cells = " | ".join(f"{phases.get(p, 0.0):.1f}" for p in ("resolve", "extract", "stage", "validate", "merge"))
        print(f"| {kind} | {rows:,} | {cells} |")


if __name__ == "__main__":
    main()
