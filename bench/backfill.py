"""Backfill benchmark: ``cascade backfill`` with 1 and 2 workers, from the local Nightscout-compatible server.

Runs the real console script (``cascade backfill glucose --start ... --end ... --workers N
--json``), each time in a fresh folder and a fresh interpreter, alternating the worker counts
``--repeat`` times, and prints the command's wall time, the backfill's own time
(the report's ``seconds``: the resume check, warming up, the workers, every partition, the
shutdown; not the interpreter's start and plugin discovery, which every command pays alike),
partitions/s over that time, and the ratios against the first worker count, for the fastest
round and the median one (on a machine shared with other work the fastest is the one least
disturbed). Nothing asserted.

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
    loads: list[float] = []  # other work on the machine: the 1-minute load average before each round
    with NightscoutServer(interval_seconds=86_400 / args.readings_per_day) as server:
        for round_ in range(args.repeat):
            for workers in args.workers:  # alternating, so that a busy spell on the machine hits both
                load = os.getloadavg()[0]
                measured = run_backfill(command, server.url, start, end, workers)
                runs.append(measured)
                loads.append(load)
                print(
                    f"round {round_ + 1}: {workers} worker(s): {measured.backfill_seconds:.1f} s backfill, "
                    f"{measured.wall_seconds:.1f} s command (load average before: {load:.2f})",
                    file=sys.stderr,
                    flush=True,
                )
    print()
    print(f"{args.days} days x {args.readings_per_day} readings, {args.repeat} rounds, on {os.cpu_count()} cores")
    print("best: the fastest round (the least disturbed by other work on the machine); median: the middle one")
    print(f"1-minute load average before the rounds: {min(loads):.2f} to {max(loads):.2f}")
    print("| workers | partitions | rows | backfill s best | median | partitions/s best | speed-up best | median "
          "| command s best | command speed-up |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = summarize(runs, args.workers[0])
    for workers in args.workers:
        mine = summarize(runs, workers)
        print(
            f"| {workers} | {mine.partitions} | {mine.rows:,} | {mine.best:.1f} | {mine.median:.1f} | "
            f"{mine.partitions / mine.best:.2f} | {base.best / mine.best:.2f}x | {base.median / mine.median:.2f}x | "
            f"{mine.best_wall:.1f} | {base.best_wall / mine.best_wall:.2f}x |"
        )


@dataclass(frozen=True)
class Summary:
    partitions: int
    rows: int
    best: float
    median: float
    best_wall: float


def summarize(runs: list[Measured], workers: int) -> Summary:
    mine = [m for m in runs if m.workers == workers]
    return Summary(
        partitions=mine[0].partitions,
        rows=mine[0].rows,
        best=min(m.backfill_seconds for m in mine),
        median=statistics.median(m.backfill_seconds for m in mine),
        best_wall=min(m.wall_seconds for m in mine),
    )


if __name__ == "__main__":
    main()
