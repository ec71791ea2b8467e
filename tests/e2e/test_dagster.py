"""The Dagster adapter with real Dagster: materializations, definitions, schedules, a webserver."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import dlt
import pandera.pandas as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from cascade import CascadeConfig, cascade_ingestion
from cascade_dagster import CascadeResource, build_definitions, days_to_refresh
from cascade_github.server import sample_events
from cascade_nightscout import glucose
from tests.conftest import GITHUB_TOKEN, NIGHTSCOUT_TOKEN, read_table, snapshot_id

GLUCOSE_KEY = dg.AssetKey(["nightscout", "glucose"])
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ns_environ(nightscout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSCOUT_URL", nightscout.url)
    monkeypatch.setenv("NIGHTSCOUT_TOKEN", NIGHTSCOUT_TOKEN)


def glucose_defs(config: CascadeConfig) -> dg.Definitions:
    return build_definitions([glucose], config=CascadeResource(home=str(config.home)))


def materialize(defs: dg.Definitions, partition: str, **kwargs: object) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(partition_key=partition, raise_on_error=False, **kwargs)


@pytest.mark.catalog_sensitive
def test_materialize_lands_rows_with_metadata(config: CascadeConfig, ns_environ: None) -> None:
    defs = glucose_defs(config)
    result = materialize(defs, "2024-05-01")
    assert result.success
    [materialization] = result.asset_materializations_for_node("nightscout__glucose")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["table"] == "nightscout.glucose"
    assert (metadata["branch"], metadata["partition"]) == ("main", "2024-05-01")
    assert (metadata["rows_extracted"], metadata["rows_inserted"], metadata["rows_updated"]) == (288, 288, 0)
    assert metadata["dagster/row_count"] == 288
    assert metadata["snapshot_id"] == str(snapshot_id(config, "nightscout.glucose"))
    assert {"seconds_extract", "seconds_stage", "seconds_validate", "seconds_merge"} <= set(metadata)
    [check] = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == ("validation", True)
    again = materialize(defs, "2024-05-01")
    assert again.success
    assert read_table(config, "nightscout.glucose").num_rows == 288


@pytest.mark.catalog_sensitive
def test_branch_tag_writes_only_the_branch(config: CascadeConfig, ns_environ: None) -> None:
    defs = glucose_defs(config)
    assert materialize(defs, "2024-05-01").success
    main = snapshot_id(config, "nightscout.glucose")
    assert materialize(defs, "2024-05-02", tags={"cascade/branch": "dev"}).success
    assert snapshot_id(config, "nightscout.glucose") == main
    assert read_table(config, "nightscout.glucose", branch="dev").num_rows == 576
    assert read_table(config, "nightscout.glucose").num_rows == 288


@pytest.mark.catalog_sensitive
def test_branch_from_run_config(config: CascadeConfig, ns_environ: None) -> None:
    run_config = {"ops": {"nightscout__glucose": {"config": {"branch": "from_config"}}}}
    assert materialize(glucose_defs(config), "2024-05-01", run_config=run_config).success
    assert read_table(config, "nightscout.glucose", branch="from_config").num_rows == 288
    assert read_table(config, "nightscout.glucose").num_rows == 0


@pytest.mark.catalog_sensitive
def test_step_fails_when_runtime_budget_is_spent(registry, config: CascadeConfig) -> None:
    @cascade_ingestion(
        table_name="slow", unique_key="id", iceberg_schema=PEOPLE, group="crm", max_runtime_seconds=1, max_retries=0
    )
    def slow(partition_date: str):
        def rows():
            time.sleep(6)
            yield {"id": "a", "age": 1}

        return dlt.resource(rows(), name="slow")

    started = time.monotonic()
    failed = materialize(build_definitions([slow], config=CascadeResource(home=str(config.home))), "2024-05-01")
    assert not failed.success
    assert time.monotonic() - started < 6  # the step did not wait for the source (a cold run takes ~4 s)
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert (
        "asset 'slow', partition 2024-05-01: exceeded max_runtime_seconds=1"
        in failure.event_specific_data.error.message
    )
    time.sleep(max(0.0, started + 10 - time.monotonic()))  # the abandoned run reaches its commit guard, gives up
    assert snapshot_id(config, "crm.slow") is None


def test_definitions_carry_the_spec(config: CascadeConfig) -> None:
    defs = glucose_defs(config)
    node = defs.get_repository_def().asset_graph.get(GLUCOSE_KEY)
    spec = glucose.spec
    assert node.group_name == "nightscout"
    assert node.kinds == {"dlt", "iceberg"}
    assert node.description == spec.description
    assert node.metadata["dagster/table_name"] == "nightscout.glucose"
    assert [c.name for c in node.metadata["dagster/column_schema"].columns] == spec.table_schema.column_names
    assert node.freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=24), warn_window=dt.timedelta(hours=1)
    )
    assert node.partitions_def == dg.DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1, timezone="UTC")
    assets_def = defs.get_assets_def(GLUCOSE_KEY)
    assert assets_def.op.retry_policy == dg.RetryPolicy(max_retries=3, delay=30)
    assert assets_def.op.tags["dagster/max_runtime"] == "300"
    job = defs.resolve_job_def("glucose_job")
    assert job.tags["dagster/max_runtime"] == "300"
    schedule = defs.resolve_schedule_def("glucose_schedule")
    assert (schedule.cron_schedule, schedule.job_name, schedule.execution_timezone) == (
        "0 */1 * * *",
        "glucose_job",
        "UTC",
    )


@pytest.mark.parametrize(
    ("cron", "tick", "expected"),
    [
        pytest.param("0 */1 * * *", "2024-05-02T00:00", ["2024-05-02", "2024-05-01"], id="hourly-first-tick"),
        pytest.param("0 */1 * * *", "2024-05-02T01:00", ["2024-05-02"], id="hourly-later-tick"),
        pytest.param("0 */1 * * *", "2024-05-02T23:00", ["2024-05-02"], id="hourly-last-tick"),
        pytest.param("30 6 * * *", "2024-05-02T06:30", ["2024-05-02", "2024-05-01"], id="daily"),
    ],
)
def test_schedule_refreshes_today_and_completes_yesterday(cron: str, tick: str, expected: list[str]) -> None:
    assert days_to_refresh(cron, dt.datetime.fromisoformat(tick).replace(tzinfo=dt.UTC)) == expected


def test_schedule_tick_requests_partitions(config: CascadeConfig) -> None:
    defs = glucose_defs(config)
    schedule = defs.resolve_schedule_def("glucose_schedule")
    at = dt.datetime(2024, 5, 2, 0, 0, tzinfo=dt.UTC)
    with dg.build_schedule_context(scheduled_execution_time=at, repository_def=defs.get_repository_def()) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2024-05-02", "2024-05-01"]


PEOPLE = Schema(NestedField(1, "id", StringType(), required=False), NestedField(2, "age", LongType(), required=False))


class People(pa.DataFrameModel):
    age: float = pa.Field(ge=0, nullable=True)

    class Config:
        coerce = True


@pytest.mark.catalog_sensitive
def test_validation_failure_fails_step_and_check(registry, config: CascadeConfig) -> None:
    records = {"2024-05-01": [{"id": "a", "age": 3}], "2024-05-02": [{"id": "b", "age": -1}]}

    @cascade_ingestion(
        table_name="people",
        unique_key="id",
        iceberg_schema=PEOPLE,
        group="crm",
        validation_schema=People,
        max_retries=0,
    )
    def people(partition_date: str):
        return dlt.resource(records[partition_date], name="people")

    defs = build_definitions([people], config=CascadeResource(home=str(config.home)))
    assert materialize(defs, "2024-05-01").success
    before = snapshot_id(config, "crm.people")
    failed = materialize(defs, "2024-05-02")
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "asset 'people', partition 2024-05-02" in failure.event_specific_data.error.message
    assert "column 'age'" in failure.event_specific_data.error.message
    [check] = failed.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == ("validation", False)
    assert snapshot_id(config, "crm.people") == before


def dagster_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "cascade-dagster" / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CASCADE_HOME": str(tmp_path / "cascade"),
        "CASCADE_BLOCKED_PLUGINS": "cascade-testplugin-broken,cascade-runlog",
    }


def test_definitions_validate_command(tmp_path: Path) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "cascade_dagster.definitions"],
        env=dagster_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.catalog_sensitive
def test_discovered_github_assets_materialize(config: CascadeConfig, github, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed through its entry point, the GitHub plugin's assets are Dagster assets that run."""
    github.state.events["octocat"] = sample_events("octocat", dt.date(2024, 5, 1), 1, 6)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("GITHUB_USERS", "octocat")
    defs = build_definitions(config=CascadeResource(home=str(config.home)))
    graph = defs.get_repository_def().asset_graph
    events_key, repos_key = dg.AssetKey(["github", "events"]), dg.AssetKey(["github", "repos"])
    assert {graph.get(events_key).group_name, graph.get(repos_key).group_name} == {"github"}
    result = defs.resolve_job_def("events_job").execute_in_process(partition_key="2024-05-01", raise_on_error=False)
    assert result.success
    assert read_table(config, "github.events").num_rows == 6
