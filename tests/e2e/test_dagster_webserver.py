"""Dagster's own view, through one real ``dagster dev`` (webserver + daemon) on 127.0.0.1 and GraphQL.

Only what the webserver shows and Dagster's storage and daemons decide is tested here: assets,
groups and schedules, partition status after a branch run, the run tag a UI-style launch ends up
with, a range backfill as one run, and the load-time log of a broken plugin. Everything else is
tested in process (test_dagster.py, test_dagster_runs.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cascade_nightscout.server import NightscoutServer
from tests.conftest import NIGHTSCOUT_TOKEN
from tests.e2e.test_dagster import REPO, free_port

GLUCOSE = ["nightscout", "glucose"]
QUICK_DAEMONS = Path(__file__).parent / "quick_daemons"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
# The shipped settings, plus a queue read every second instead of every 5 s: the tests wait less.
# (The backfill daemon's 30 s is not a setting: quick_daemons/sitecustomize.py shortens it. The asset
# daemon would follow it down to 2 s and evaluate every asset's automation each time, which took
# 55 s of CPU over the module; its own setting keeps it at 30 s.)
QUICK_DAEMON_SETTINGS = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
auto_materialize:
  minimum_interval_seconds: 30
"""


@dataclass(frozen=True)
class DagsterDev:
    port: int
    log: Path
    location: str
    repository: str

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert "errors" not in answer, answer["errors"]
        return answer["data"]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory, nightscout_server: NightscoutServer) -> Iterator[DagsterDev]:
    """``dagster dev`` on the ready-made definitions, the broken test plugin left installed on purpose."""
    folder = tmp_path_factory.mktemp("dagster_dev")
    home = folder / "dagster_home"
    home.mkdir()
    settings = (REPO / "cascade-dagster" / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(settings + QUICK_DAEMON_SETTINGS)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CASCADE_HOME": str(folder / "cascade"),
        "CASCADE_BLOCKED_PLUGINS": "cascade-runlog",
        "NIGHTSCOUT_URL": nightscout_server.url,
        "NIGHTSCOUT_TOKEN": NIGHTSCOUT_TOKEN,
        # a backfill daemon that ticks every 2 s instead of 30 (see quick_daemons/sitecustomize.py)
        "PYTHONPATH": os.pathsep.join([str(QUICK_DAEMONS), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    port = free_port()
    log = folder / "dagster-dev.log"
    dagster = Path(sys.executable).parent / "dagster"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [str(dagster), "dev", "-m", "cascade_dagster.definitions", "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            cwd=folder,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_server(server, port, log)
        bare = DagsterDev(port, log, "", "")
        [repository] = bare.query(
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
        )["repositoriesOrError"]["nodes"]
        yield DagsterDev(port, log, repository["location"]["name"], repository["name"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # dagster dev's own group: webserver, daemon, code server
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def wait_for_server(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return
        except OSError:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "dagster dev did not start"
            time.sleep(1)


def launch(dev: DagsterDev, partition: str, tags: dict[str, str] | None = None) -> str:
    """What the UI's "Materialize" does: a run of the implicit asset job for one partition."""
    params = {
        "selector": {
            "repositoryLocationName": dev.location,
            "repositoryName": dev.repository,
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": GLUCOSE}],
        },
        "executionMetadata": {
            "tags": [{"key": k, "value": v} for k, v in {"dagster/partition": partition, **(tags or {})}.items()]
        },
    }
    launched = dev.query(
        "mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {"
        " __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
        {"p": params},
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def wait_for_run(dev: DagsterDev, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:
        run = dev.query(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }", {"id": run_id}
        )["runOrError"]
        if run["status"] in FINISHED:
            return {"status": run["status"], "tags": {t["key"]: t["value"] for t in run["tags"]}}
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(1)


def materialized_ranges(dev: DagsterDev) -> list[tuple[str, str]]:
    node = dev.query(
        "query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode { assetPartitionStatuses {"
        " ... on TimePartitionStatuses { ranges { status startKey endKey } } } } } }",
        {"k": {"path": GLUCOSE}},
    )["assetNodeOrError"]
    ranges = node["assetPartitionStatuses"]["ranges"]
    return [(r["startKey"], r["endKey"]) for r in ranges if r["status"] == "MATERIALIZED"]


def test_broken_plugin_is_logged_at_load(dagster_dev: DagsterDev) -> None:
    assert (
        "Cascade plugin 'cascade-testplugin-broken' failed to load, its assets are missing: "
        "ModuleNotFoundError: No module named 'cascade_dependency_that_does_not_exist'"
    ) in dagster_dev.log.read_text()


def test_webserver_shows_assets_groups_and_schedule(dagster_dev: DagsterDev) -> None:
    nodes = dagster_dev.query("{ assetNodes { assetKey { path } groupName isPartitioned } }")["assetNodes"]
    found = {tuple(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    assert all(n["isPartitioned"] for n in nodes)
    assert found[("nightscout", "glucose")] == "nightscout"
    assert found[("testing", "readings")] == "testing"
    assert found[("testing", "gadgets")] == "testing"
    repositories = dagster_dev.query(
        "{ repositoriesOrError { ... on RepositoryConnection"
        " { nodes { schedules { name cronSchedule pipelineName } } } } }"
    )["repositoriesOrError"]["nodes"]
    schedules = [schedule for repository in repositories for schedule in repository["schedules"]]
    assert {"name": "glucose_schedule", "cronSchedule": "0 */1 * * *", "pipelineName": "glucose_job"} in schedules


def test_branch_run_leaves_main_status_and_every_run_is_bounded(dagster_dev: DagsterDev) -> None:
    main_run = launch(dagster_dev, "2024-03-01")
    branch_run = launch(dagster_dev, "2024-03-02", {"cascade/branch": "dev"})
    main, branch = wait_for_run(dagster_dev, main_run), wait_for_run(dagster_dev, branch_run)
    assert main["status"] == "SUCCESS"
    assert main["tags"]["dagster/max_runtime"] == "300"  # the implicit asset job has no tags of its own
    assert branch["status"] == "SUCCESS"
    assert materialized_ranges(dagster_dev) == [("2024-03-01", "2024-03-01")]


def test_range_backfill_is_one_run(dagster_dev: DagsterDev) -> None:
    days = [f"2024-04-{d:02d}" for d in range(1, 9)]
    started = time.monotonic()
    launched = dagster_dev.query(
        "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {"
        " __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }",
        {"p": {"assetSelection": [{"path": GLUCOSE}], "partitionNames": days, "fromFailure": False}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = launched["backfillId"]
    deadline = time.monotonic() + 300
    while not (runs := backfill_runs(dagster_dev, backfill)):  # the backfill daemon submits it on its next tick
        assert time.monotonic() < deadline, f"backfill {backfill} submitted no run"
        time.sleep(1)
    [run] = runs  # one run for the whole range: nothing is left for the daemon to submit
    finished = wait_for_run(dagster_dev, run["runId"])
    elapsed = time.monotonic() - started
    assert finished["status"] == "SUCCESS"
    assert len(backfill_runs(dagster_dev, backfill)) == 1  # the daemon ticked meanwhile and found nothing to add
    tags = finished["tags"]
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        days[0],
        days[-1],
    )
    assert tags["dagster/max_runtime"] == str(8 * 300)
    assert ("2024-04-01", "2024-04-08") in materialized_ranges(dagster_dev)
    print(f"8-partition backfill through dagster dev: {elapsed:.1f} s, {len(runs)} run(s)")


def backfill_runs(dev: DagsterDev, backfill: str) -> list[dict[str, Any]]:
    return list(
        dev.query(
            "query($t: [ExecutionTag!]) {"
            " runsOrError(filter: {tags: $t}) { ... on Runs { results { runId status } } } }",
            {"t": [{"key": "dagster/backfill", "value": backfill}]},
        )["runsOrError"]["results"]
    )
