"""Concurrency benchmark: N writer processes merging into one table on PostgreSQL + S3.

Starts the same real servers the tests use (PostgreSQL from Debian's packages, moto's S3
server) and, for N = 1, 2, 4, 8, runs N spawned processes that each merge ``--batches``
batches of ``--rows`` rows with keys overlapping across writers into one fresh table, twice:
with Cascade's per-table writer lock (what ``cascade.run`` does on PostgreSQL) and with
optimistic commits alone (head check and re-plan, as on any other catalog). Prints commits/s,
rows/s, conflicts per commit, the ratio against one writer and locked against optimistic, all
from the same run. Checks each final table against the model (last committer wins, one row
per key).

    python bench/concurrency.py [--writers 1 2 4 8] [--batches 5] [--rows 150]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' servers and writers

from cascade import CascadeConfig
from tests.integration.test_concurrency import assert_no_lost_update_and_no_duplicate, run_writers
from tests.servers import PostgresServer, S3Server, shared_catalog_properties


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--rows", type=int, default=150)
    args = parser.parse_args()
    results: dict[tuple[str, int], tuple[int, int, int, float]] = {}
    modes = {"locked": True, "optimistic": False}
    with PostgresServer() as postgres, S3Server() as s3, tempfile.TemporaryDirectory() as home:
        postgres.create_database("bench")
        for writers in args.writers:
            for mode, lock in modes.items():
                name = f"bench_{mode}_{writers}"
                properties = shared_catalog_properties(postgres, s3, database="bench", prefix=name)
                config = CascadeConfig(home=Path(home), catalog_name=name, catalog_properties=properties)
                outcome = run_writers(config, writers, args.batches, args.rows, config.commit_attempts, lock=lock)
                assert_no_lost_update_and_no_duplicate(outcome, writers, args.batches)
                conflicts = sum(a - 1 for a in outcome["attempts"])
                commits = len(outcome["commits"])
                results[mode, writers] = (commits, conflicts, max(outcome["attempts"]), outcome["seconds"])
    print(f"\n{'mode':>10} {'writers':>7} {'commits':>7} {'seconds':>8} {'commits/s':>9} {'rows/s':>8} "
          f"{'conflicts/commit':>16} {'max attempts':>12} {'vs 1 writer':>11} {'locked/optimistic':>17}")  # fmt: skip
    for mode in modes:
        first = results[mode, args.writers[0]]
        base = first[0] / first[3]
        for writers in args.writers:
            commits, conflicts, most, seconds = results[mode, writers]
            rate = commits / seconds
            other = results["optimistic", writers]
            versus = (rate / (other[0] / other[3])) if mode == "locked" else 1.0
            print(f"{mode:>10} {writers:>7} {commits:>7} {seconds:>8.2f} {rate:>9.2f} {rate * args.rows:>8.0f} "
                  f"{conflicts / commits:>16.2f} {most:>12} {rate / base:>10.2f}x {versus:>16.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
