"""The Dagster maintenance job, executed in process with real Dagster, on the glucose asset's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import cascade
from cascade import CascadeConfig
from cascade.catalog import open_catalog
from cascade.tables import ingested_partitions
from cascade_dagster import CascadeResource, build_definitions
from cascade_dagster.maintenance import JOB_NAME, SCHEDULE_NAME, maintenance_definitions
from cascade_nightscout import glucose
from tests.conftest import read_table

DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]
TABLE = "nightscout.glucose"
GLUCOSE_KEY = dg.AssetKey(["nightscout", "glucose"])


def definitions(config: CascadeConfig, schedule: str | None = None) -> dg.Definitions:
    resource = CascadeResource(home=str(config.home), catalog=dict(config.catalog_properties))
    return dg.Definitions.merge(build_definitions([glucose], config=resource), maintenance_definitions(schedule))


def run_maintenance(defs: dg.Definitions, **settings: Any) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(JOB_NAME)
    return job.execute_in_process(run_config={"ops": {"maintain_tables": {"config": settings}}}, raise_on_error=False)


@pytest.fixture
def ingested(ns_config: CascadeConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CascadeConfig:
    monkeypatch.chdir(tmp_path)  # no cascade.toml here: [maintenance] defaults
    for day in DAYS:
        cascade.run(glucose, day, config=ns_config)
    return ns_config


def test_job_maintains_every_table_and_reports_metadata(ingested: CascadeConfig) -> None:
    rows = read_table(ingested, TABLE).sort_by("_id")
    before = len(open_catalog(ingested).load_table(TABLE).snapshots())

    result = run_maintenance(
        definitions(ingested),
        expire_older_than="0s",
        compact=True,
        rewrite_manifests=True,
        remove_orphans=True,
        orphan_older_than="0s",
    )

    assert result.success
    [observation] = [
        event.event_specific_data.asset_observation
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.asset_key == GLUCOSE_KEY
    metadata = {k: v.value for k, v in observation.metadata.items()}
    assert metadata["table"] == TABLE and metadata["dry_run"] is False
    assert metadata["expiry/snapshots_expired"] >= before - 1 and metadata["expiry/snapshots_kept"] == 1
    assert metadata["manifests/before"] == 3 and metadata["manifests/after"] == 1
    assert {"compaction/files_removed", "orphans/files_removed", "orphans/bytes_removed"} <= set(metadata)
    output = result.output_for_node("maintain_tables")
    assert output == 1
    [step_output] = [
        e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == "maintain_tables"
    ]
    totals = {k: v.value for k, v in step_output.event_specific_data.metadata.items()}
    assert totals["tables"] == 1 and totals["snapshots_expired"] == metadata["expiry/snapshots_expired"]
    table = open_catalog(ingested).load_table(TABLE)
    assert len(table.snapshots()) == 1
    assert read_table(ingested, TABLE).sort_by("_id").equals(rows)
    assert ingested_partitions(table, "glucose") == set(DAYS)  # backfill resume survives the expiry


def test_dry_run_changes_nothing(ingested: CascadeConfig) -> None:
    before = len(open_catalog(ingested).load_table(TABLE).snapshots())
    result = run_maintenance(definitions(ingested), expire_older_than="0s", dry_run=True)
    assert result.success
    assert len(open_catalog(ingested).load_table(TABLE).snapshots()) == before


def test_a_failing_table_fails_the_run_naming_it(ingested: CascadeConfig) -> None:
    result = run_maintenance(definitions(ingested), tables=["nightscout.missing"])
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "nightscout.missing" in failure.event_specific_data.error_display_string


def test_schedule_daily_by_default_and_configurable(ingested: CascadeConfig) -> None:
    assert definitions(ingested).resolve_schedule_def(SCHEDULE_NAME).cron_schedule == "0 3 * * *"
    assert definitions(ingested, "30 1 * * 0").resolve_schedule_def(SCHEDULE_NAME).cron_schedule == "30 1 * * 0"
