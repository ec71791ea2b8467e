"""The Dagster ``freshness`` asset check on the planted history (``tests/planted.py``), in process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from cascade import CascadeConfig
from cascade_dagster import CascadeResource, build_definitions
from cascade_dagster.freshness import FRESHNESS_CHECK, JOB_NAME, SCHEDULE_NAME, freshness_definitions
from tests.planted import FRESH, LATE, OVERDUE, Planted, planted_once

__all__ = ["planted_once"]
KEY = dg.AssetKey(["lab", "planted"])


@pytest.fixture
def planted(planted_once: tuple[Planted, CascadeConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Planted:
    """The module's history: the check only reads it."""
    monkeypatch.chdir(tmp_path)
    return planted_once[0]


@pytest.fixture
def config(planted_once: tuple[Planted, CascadeConfig]) -> CascadeConfig:
    return planted_once[1]


def evaluate(planted: Planted, config: CascadeConfig, seconds: int) -> dg.AssetCheckEvaluation:
    resource = CascadeResource(home=str(config.home), catalog=dict(config.catalog_properties))
    defs = dg.Definitions.merge(
        build_definitions([planted.asset], config=resource),
        freshness_definitions([planted.asset], clock=lambda: planted.at(seconds)),
    )
    assert defs.resolve_schedule_def(SCHEDULE_NAME).cron_schedule == "*/15 * * * *"
    result = defs.resolve_job_def(JOB_NAME).execute_in_process(raise_on_error=False)
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.asset_key, evaluation.check_name) == (KEY, FRESHNESS_CHECK)
    return evaluation


@pytest.mark.parametrize(
    ("seconds", "passed", "severity", "level"),
    [
        (FRESH, True, dg.AssetCheckSeverity.WARN, "fresh"),
        (LATE, False, dg.AssetCheckSeverity.WARN, "warn"),
        (OVERDUE, False, dg.AssetCheckSeverity.ERROR, "fail"),
    ],
    ids=["passes", "warns", "fails"],
)
def test_freshness_check(
    planted: Planted, config: CascadeConfig, seconds: int, passed: bool, severity: dg.AssetCheckSeverity, level: str
) -> None:
    evaluation = evaluate(planted, config, seconds)
    assert (evaluation.passed, evaluation.severity) == (passed, severity)
    metadata = {name: value.value for name, value in evaluation.metadata.items()}
    assert metadata["level"] == level
    assert metadata["expected_partition"] == metadata["newest_partition"] == planted.day(0)
    assert metadata["missing_partitions_last_30_days"] == [planted.gap]  # days before start_date do not count
    assert metadata["failed_partitions_last_30_days"] == [planted.failed]
    assert metadata["last_commit_at"] == planted.todays_commit.isoformat()
    assert evaluation.description.startswith("8 of 10 days, 1 missing, 1 failed")
