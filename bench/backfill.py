"""Backfill benchmark: ``cascade backfill`` with 1 and 2 workers, from the local Nightscout-compatible server.

Runs the real console script (``cascade backfill glucose --start ... --end ... --workers N
--json``), each time in a fresh folder and a fresh interpreter, alternating the worker counts
``--repeat`` times, and prints the medians: the command's wall time, the backfill's own time
(the report's ``seconds``: the resume check, warming up, the workers, every partition, the
shutdown; not the interpreter's start and plugin discovery, which every command pays alike),
partitions/s over that time, and the ratios against the first worker count. Nothing asserted.

    python bench/backfill.py [--days 60] [--readings-per-day 288] [--workers 1 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Measured:
    workers: int
    wall_seconds: float
    backfill_seconds: float
    partitions: int
    rows: int


def run_backfill(command: str, url: str, start: dt.date, end: dt.date, workers: int) -> Measured:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "NIGHTSCOUT_URL": url, "CASCADE_BLOCKED_PLUGINS": "cascade-testplugin-broken"}
        arguments = ["backfill", "glucose", "--start", start.isoformat(), "--end", end.isoformat()]
        started = time.perf_counter()
        done = subprocess.run(
            [command, *arguments, "--workers", str(workers), "--json"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"backfill with {workers} worker(s) failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return Measured(workers, wall, report["seconds"], len(report["succeeded"]), report["rows_extracted"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--readings-per-day", type=int, default=288)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from cascade_nightscout.server import NightscoutServer

    cascade = Path(sys.executable).parent / "cascade"
    command = str(cascade) if cascade.exists() else shutil.which("cascade") or "cascade"
    start = dt.date(2024, 7, 1)
    end = start + dt.timedelta(days=args.days - 1)
    runs: list[Measured] = []
    with NightscoutServer(interval_seconds=86_400 / args.readings_per_day) as server:
        for round_ in range(args.repeat):
            for workers in args.workers:  # alternating, so that a busy spell on the machine hits both
                measured = run_backfill(command, server.url, start, end, workers)
                runs.append(measured)
                print(
                    f"round {round_ + 1}: {workers} worker(s): {measured.backfill_seconds:.1f} s backfill, "
                    f"{measured.wall_seconds:.1f} s command",
                    file=sys.stderr,
                    flush=True,
                )
    medians = {
        w: (
            statistics.median(m.backfill_seconds for m in runs if m.workers == w),
            statistics.median(m.wall_seconds for m in runs if m.workers == w),
            next(m for m in runs if m.workers == w),
        )
        for w in args.workers
    }
    base_backfill, base_wall, _ = medians[args.workers[0]]
    print()
    print(f"{args.days} days x {args.readings_per_day} readings, median of {args.repeat}, on {os.cpu_count()} cores")
    print("| workers | partitions | rows | backfill s | partitions/s | speed-up | command s | command speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for workers, (backfill_seconds, wall_seconds, one) in medians.items():
        print(
            f"| {workers} | {one.partitions} | {one.rows:,} | {backfill_seconds:.1f} | "
            f"{one.partitions / backfill_seconds:.2f} | {base_backfill / backfill_seconds:.2f}x | "
            f"{wall_seconds:.1f} | {base_wall / wall_seconds:.2f}x |"
        )


if __name__ == "__main__":
    main()
