"""End-to-end benchmark, per partition: ``cascade.run`` of the nightscout asset beside dlt alone.

Against the local Nightscout-compatible server, one run per day, sequential, each method in a
fresh process on a fresh folder:
  cascade        cascade.run (extract, stage, validate, merge, commit) into the embedded catalog
  dlt-parquet    dlt alone, the same rest_api source to plain parquet files (the staging floor)
  dlt-iceberg    dlt alone, the same source to its Iceberg route, merge (upsert) on _id

    python bench/e2e.py [--days 5] [--smoke]

Prints seconds per partition (median over the days after the first, which pays imports and
table creation) and the ratios the targets are stated in. Nothing is asserted.

One big day (1M to 10M rows, and 1M JSON-shaped records) beside dlt alone, with peak memory and
Cascade's per-phase seconds, is ``bench/bigday.py``: it needs no HTTP server, and each of its
cases runs minutes.
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
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

METHODS = ("cascade", "dlt-parquet", "dlt-iceberg")
READINGS_PER_DAY = {288: 300.0, 20_000: 4.32}  # readings a day -> seconds between readings


def days(count: int) -> list[str]:
    first = dt.date(2024, 6, 1)
    return [(first + dt.timedelta(days=n)).isoformat() for n in range(count)]


def child(method: str, url: str, dates: list[str], folder: Path) -> list[float]:
    import dlt

    import cascade
    from cascade.context import RunContext
    from cascade_nightscout import glucose

    config = cascade.CascadeConfig(home=folder / "cascade", plugins={"nightscout": {"url": url}})
    timings = []
    for date in dates:
        started = time.perf_counter()
        if method == "cascade":
            cascade.run(glucose, date, config=config)
        else:
            context = RunContext(asset="glucose", partition_date=date, branch="main", run_id="bench", config=config)
            source = glucose.fn(date, context)
            pipeline = dlt.pipeline(
                pipeline_name=method.replace("-", "_"),
                pipelines_dir=str(folder / "pipelines"),
                destination=dlt.destinations.filesystem(bucket_url=(folder / "lake").as_uri()),
                dataset_name="nightscout",
            )
            if method == "dlt-iceberg":
                source.glucose.apply_hints(
                    primary_key="_id",
                    write_disposition={"disposition": "merge", "strategy": "upsert"},
                    table_format="iceberg",
                )
            pipeline.run(source, loader_file_format="parquet")
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="2 days, 288 readings a day")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--dir")
    parser.add_argument("--dates", nargs="*")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.url, args.dates, Path(args.dir))))
        return
    from cascade_nightscout.server import NightscoutServer

    sizes = {288: 300.0} if args.smoke else READINGS_PER_DAY
    dates = days(2 if args.smoke else args.days)
    results: dict[int, dict[str, list[float]]] = {}
    for per_day, interval in sizes.items():
        results[per_day] = {}
        with NightscoutServer(interval_seconds=interval) as server:
            for method in METHODS:
                with tempfile.TemporaryDirectory() as folder:
                    done = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            method,
                            "--url",
                            server.url,
                            "--dir",
                            folder,
                            "--dates",
                            *dates,
                        ],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                if done.returncode != 0:
                    print(done.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{method} failed")
                results[per_day][method] = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{per_day}/day {method}: {results[per_day][method]}", file=sys.stderr, flush=True)
    print()
    print("| readings/day | cascade s/partition | dlt->parquet | dlt->iceberg | cascade/parquet | iceberg/cascade |")
    print("|---|---|---|---|---|---|")
    for per_day, by_method in results.items():
        median = {m: statistics.median(t[1:] if len(t) > 1 else t) for m, t in by_method.items()}
        print(
            f"| {per_day:,} | {median['cascade']:.3f} | {median['dlt-parquet']:.3f} | {median['dlt-iceberg']:.3f} "
            f"| {median['cascade'] / median['dlt-parquet']:.2f}x | {median['dlt-iceberg'] / median['cascade']:.1f}x |"
        )


if __name__ == "__main__":
    main()
