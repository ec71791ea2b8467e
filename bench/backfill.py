"""Backfill benchmark: a 30-day ``cascade backfill`` from the local Nightscout-compatible server.

Runs the real console script (``cascade backfill glucose --start ... --end ... --workers N``)
with 1 and 2 workers, each on a fresh folder, and prints wall time and rows/s. Nothing asserted.

    python bench/backfill.py [--days 30] [--readings-per-day 288]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--readings-per-day", type=int, default=288)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    from cascade_nightscout.server import NightscoutServer

    cascade = Path(sys.executable).parent / "cascade"
    command = str(cascade) if cascade.exists() else shutil.which("cascade") or "cascade"
    start = dt.date(2024, 7, 1)
    end = start + dt.timedelta(days=args.days - 1)
    rows: list[tuple[int, float, int]] = []
    with NightscoutServer(interval_seconds=86_400 / args.readings_per_day) as server:
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as folder:
                env = {
                    **os.environ,
                    "NIGHTSCOUT_URL": server.url,
                    "CASCADE_BLOCKED_PLUGINS": "cascade-testplugin-broken",
                }
                started = time.perf_counter()
                done = subprocess.run(
                    [
                        command,
                        "backfill",
                        "glucose",
                        "--start",
                        start.isoformat(),
                        "--end",
                        end.isoformat(),
                        "--workers",
                        str(workers),
                        "--json",
                    ],
                    cwd=folder,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"backfill with {workers} worker(s) failed:\n{done.stderr[-2000:]}")
            report = json.loads(done.stdout)
            rows.append((workers, seconds, report["rows_extracted"]))
            print(f"{workers} worker(s): {seconds:.1f} s", file=sys.stderr, flush=True)
    print()
    print(f"| workers | partitions | rows | wall s | rows/s | s/partition | speed-up |  ({args.readings_per_day}/day)")
    print("|---|---|---|---|---|---|---|")
    for workers, seconds, landed in rows:
        print(
            f"| {workers} | {args.days} | {landed:,} | {seconds:.1f} | {landed / seconds:,.0f} | "
            f"{seconds / args.days:.2f} | {rows[0][1] / seconds:.2f}x |"
        )


if __name__ == "__main__":
    main()
