"""Dagster backfill benchmark: an 8-partition range backfill of ``nightscout/glucose`` through ``dagster dev``.

Launches the backfill over GraphQL, as the UI does, once with one run per partition (what the
adapter did before single-run backfills: ``BackfillPolicy.multi_run(1)``) and once with the
default ``BackfillPolicy.single_run()``, each on a fresh Dagster home and catalog, and prints
wall time from launch to the backfill's end and the number of runs. Nothing asserted.

    python bench/dagster_backfill.py [--days 8]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFINITIONS = """
import os
import dagster as dg
from cascade_dagster import CascadeTranslator, build_definitions

class Policy(CascadeTranslator):
    def get_backfill_policy(self, spec):
        per_run = int(os.environ["BENCH_PARTITIONS_PER_RUN"])
        return dg.BackfillPolicy.multi_run(per_run) if per_run else dg.BackfillPolicy.single_run()

defs = build_definitions(translator=Policy())
"""


def query(port: int, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": text, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.loads(response.read())["data"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backfill(days: list[str], per_run: int, env: dict[str, str]) -> tuple[float, int, str]:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "cascade-dagster" / "dagster.yaml", home / "dagster.yaml")
        (Path(folder) / "defs.py").write_text(DEFINITIONS)
        port = free_port()
        dagster = Path(sys.executable).parent / "dagster"
        server = subprocess.Popen(
            [str(dagster), "dev", "-f", "defs.py", "-h", "127.0.0.1", "-p", str(port)],
            env={
                **env,
                "DAGSTER_HOME": str(home),
                "CASCADE_HOME": str(Path(folder) / "cascade"),
                "BENCH_PARTITIONS_PER_RUN": str(per_run),
            },
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                        break
                except OSError:
                    time.sleep(1)
            started = time.monotonic()
            launched = query(
                port,
                "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {"
                " ... on LaunchBackfillSuccess { backfillId } } }",
                {"p": {"assetSelection": [{"path": ["nightscout", "glucose"]}], "partitionNames": days}},
            )
            backfill_id = launched["launchPartitionBackfill"]["backfillId"]
            while True:
                status = query(
                    port,
                    "query($id: String!) { partitionBackfillOrError(backfillId: $id)"
                    " { ... on PartitionBackfill { status } } }",
                    {"id": backfill_id},
                )["partitionBackfillOrError"]["status"]
                if status not in ("REQUESTED", "CANCELING"):
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            runs = query(
                port,
                "query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { results { runId } } } }",
                {"t": [{"key": "dagster/backfill", "value": backfill_id}]},
            )["runsOrError"]["results"]
            return elapsed, len(runs), status
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=8)
    args = parser.parse_args()
    from cascade_nightscout.server import NightscoutServer

    start = dt.date(2024, 4, 1)
    days = [(start + dt.timedelta(days=n)).isoformat() for n in range(args.days)]
    with NightscoutServer(token="bench-token") as server:
        env = {
            **os.environ,
            "NIGHTSCOUT_URL": server.url,
            "NIGHTSCOUT_TOKEN": "bench-token",
            "CASCADE_BLOCKED_PLUGINS": "cascade-testplugin-broken,cascade-runlog",
        }
        rows = [
            (label, *backfill(days, per_run, env))
            for label, per_run in (("one run per partition", 1), ("single run", 0))
        ]
    print(f"{'policy':<24}{'partitions':>11}{'runs':>6}{'wall s':>9}  status")
    for label, elapsed, runs, status in rows:
        print(f"{label:<24}{args.days:>11}{runs:>6}{elapsed:>9.1f}  {status}")


if __name__ == "__main__":
    main()
