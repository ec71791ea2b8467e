"""Coverage and freshness read from a real table and run log (``cascade.coverage``), before and after expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cascade import CascadeConfig
from cascade.asset_registry import Registry
from cascade.catalog import open_catalog
from cascade.coverage import committed_runs, failed_runs, table_status
from cascade.maintenance import expire_snapshots
from tests.planted import FAIL_HOURS, FRESH, LATE, OVERDUE, TABLE, WARN_HOURS, Planted, plant, planted_once, runlog

__all__ = ["planted_once", "runlog"]


@pytest.fixture
def planted(planted_once: tuple[Planted, CascadeConfig]) -> Planted:
    """The module's history, for the tests that only read it (planting takes seconds)."""
    return planted_once[0]


@pytest.fixture
def config(planted_once: tuple[Planted, CascadeConfig]) -> CascadeConfig:
    return planted_once[1]


def expected_states(planted: Planted, recent: str) -> dict[str, str]:
    states = {planted.day(offset): "committed" for offset in range(-9, 1)}
    states[planted.gap] = "missing"
    states[planted.failed] = "failed"
    states[planted.day(-1)] = states[planted.day(0)] = recent
    return states


def test_committed_runs_are_the_last_run_of_each_partition(planted: Planted, config: CascadeConfig) -> None:
    table = open_catalog(config).load_table(TABLE)
    runs = committed_runs(table, "planted")
    assert {p: r.run_id for p, r in runs.items()} == {p: r.run_id for p, r in planted.results.items()}
    assert {p: r.snapshot_id for p, r in runs.items()} == {p: r.snapshot_id for p, r in planted.results.items()}
    assert {r.rows_added for r in runs.values()} == {3}
    failures = failed_runs(open_catalog(config), "planted")
    assert list(failures) == [planted.failed]
    assert failures[planted.failed].error == (
        f"SourceError: asset 'planted', partition {planted.failed}: the source failed: "
        f"UpstreamDownError: upstream down for {planted.failed}"
    )


@pytest.mark.parametrize(
    ("seconds", "level", "recent"),
    [(FRESH, "fresh", "committed"), (LATE, "warn", "late"), (OVERDUE, "fail", "late")],
    ids=["fresh", "late", "overdue"],
)
def test_planted_history_gives_exact_status(
    planted: Planted, config: CascadeConfig, seconds: int, level: str, recent: str
) -> None:
    status = table_status(open_catalog(config), planted.asset.spec, TABLE, now=planted.at(seconds))
    assert {d.partition: d.state for d in status.days} == expected_states(planted, recent)
    assert status.missing == (planted.gap,)
    assert status.failed == (planted.failed,)
    assert (status.first_day, status.today) == (planted.start, planted.today)
    assert status.freshness.level == level
    assert status.freshness.expected == planted.day(0)
    assert (status.freshness.warn_hours, status.freshness.fail_hours) == (WARN_HOURS, FAIL_HOURS)
    # The old day's backfill is the last run, yet freshness follows today's partition.
    assert status.last_run is not None and status.last_run.partition == planted.backfilled
    assert status.last_run.run_id == planted.results[planted.backfilled].run_id
    assert status.freshness.last_commit_at == planted.todays_commit
    assert status.summary().startswith("8 of 10 days, 1 missing, 1 failed, last run ")


def test_since_narrows_the_days(planted: Planted, config: CascadeConfig) -> None:
    since = planted.today - dt.timedelta(days=2)
    status = table_status(open_catalog(config), planted.asset.spec, TABLE, now=planted.at(FRESH), since=since)
    assert [d.partition for d in status.days] == [planted.day(-2), planted.day(-1), planted.day(0)]


def test_status_survives_expiry_through_the_ledger(tmp_path: Path, registry: Registry, runlog: None) -> None:
    config = CascadeConfig(home=tmp_path / "cascade")  # a history of its own: expiry changes it
    planted = plant(config)
    catalog = open_catalog(config)
    before = table_status(catalog, planted.asset.spec, TABLE, now=planted.at(LATE))
    table = catalog.load_table(TABLE)
    result = expire_snapshots(table, older_than=dt.timedelta(0), retain_last=1, now=planted.at(OVERDUE))
    assert (len(result.snapshots_expired), result.snapshots_kept) == (len(planted.results), 1)  # 9 runs committed
    after = table_status(catalog, planted.asset.spec, TABLE, now=planted.at(LATE))
    assert [(d.partition, d.state) for d in after.days] == [(d.partition, d.state) for d in before.days]
    assert after.days == before.days  # time, run id and rows of every recent partition kept
    assert after.freshness == before.freshness
    assert after.last_run == before.last_run
