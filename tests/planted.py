"""A planted history for coverage and freshness tests: real runs of a small asset into a real table.

Days relative to ``today`` (the date the runs happen on):

    today-9 .. today-6   committed
    today-5              a gap (never run)
    today-4              failed (the run log records it)
    today-3 .. today     committed, today's run last of the daily ones
    today-8              run again after today's run (an old-day backfill)

Snapshot times are the machine's, so tests judge at ``today's commit + n seconds``, with
freshness windows in seconds (72 s warn, 144 s fail), and the hourly cron makes today's
partition the newest that should exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cascade_runlog.plugin
import dlt
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

import cascade
from cascade import CascadeConfig, HttpPolicy, cascade_ingestion, register_hooks, unregister_hooks
from cascade.asset_registry import isolated_registry
from cascade.catalog import open_catalog
from tests.conftest import FAST_HTTP

SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=False),
    NestedField(2, "day", StringType(), required=False),
    NestedField(3, "v", LongType(), required=False),
)
TABLE = "lab.planted"
WARN_HOURS, FAIL_HOURS = 0.02, 0.04  # 72 s and 144 s
FRESH, LATE, OVERDUE = 5, 100, 200  # seconds after today's commit


class UpstreamDownError(RuntimeError):
    """The planted failure of one day's source."""


@dataclass(frozen=True)
class Planted:
    asset: cascade.CascadeAsset  # type: ignore[type-arg]
    today: dt.date
    start: dt.date
    results: dict[str, cascade.IngestionResult]  # the last committed run of each day
    todays_commit: dt.datetime
    backfilled: str
    gap: str
    failed: str

    def day(self, offset: int) -> str:
        return (self.today + dt.timedelta(days=offset)).isoformat()

    def at(self, seconds: float) -> dt.datetime:
        return self.todays_commit + dt.timedelta(seconds=seconds)


def make_asset(today: dt.date, failing: set[str]) -> cascade.CascadeAsset:  # type: ignore[type-arg]
    @cascade_ingestion(
        table_name="planted",
        unique_key="id",
        iceberg_schema=SCHEMA,
        group="lab",
        cron="0 * * * *",
        freshness_hours=(WARN_HOURS, FAIL_HOURS),
        start_date=today - dt.timedelta(days=9),
    )
    def planted(partition_date: str):  # type: ignore[no-untyped-def]
        """Three readings a day; each run of a day sends new values, so every run commits."""
        if partition_date in failing:
            raise UpstreamDownError(f"upstream down for {partition_date}")
        calls[partition_date] = calls.get(partition_date, 0) + 1
        version = calls[partition_date]
        return dlt.resource(
            [{"id": f"{partition_date}/{n}", "day": partition_date, "v": n + version} for n in range(3)],
            name="planted",
        )

    calls: dict[str, int] = {}

    return planted


@contextmanager
def run_log_registered() -> Iterator[None]:
    register_hooks(cascade_runlog.plugin, name="cascade-runlog")
    try:
        yield
    finally:
        unregister_hooks("cascade-runlog")


@pytest.fixture
def runlog() -> Iterator[None]:
    with run_log_registered():
        yield


@pytest.fixture(scope="module")
def planted_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Planted, CascadeConfig]:
    """One history planted for a module's tests that only read it (planting takes seconds), on an
    embedded catalog of its own."""
    config = CascadeConfig(
        home=tmp_path_factory.mktemp("planted") / "cascade", http=HttpPolicy.from_settings(FAST_HTTP)
    )
    # Only the planting is isolated: a registry swapped in here and swapped back at the module's end
    # would restore the registry of whichever test was running when this fixture was set up.
    with isolated_registry(), run_log_registered():  # the run log for the planting only
        planted = plant(config)
    return planted, config


def plant(config: CascadeConfig) -> Planted:
    """Run the planted history (the caller provides an isolated registry and the run log)."""
    today = dt.datetime.now(dt.UTC).date()
    if (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).date() != today:
        pytest.skip("within minutes of midnight UTC the planted days would straddle two dates")
    day = {offset: (today + dt.timedelta(days=offset)).isoformat() for offset in range(-9, 1)}
    failed, gap, backfilled = day[-4], day[-5], day[-8]
    asset = make_asset(today, {failed})
    results = {}
    for offset in range(-9, 1):
        if day[offset] == gap:
            continue
        if day[offset] == failed:
            with pytest.raises(cascade.CascadeError):
                cascade.run(asset, failed, config=config)
            continue
        results[day[offset]] = cascade.run(asset, day[offset], config=config)
    todays = open_catalog(config).load_table(TABLE).current_snapshot()
    assert todays is not None
    results[backfilled] = cascade.run(asset, backfilled, config=config)
    return Planted(
        asset=asset,
        today=today,
        start=today - dt.timedelta(days=9),
        results=results,
        todays_commit=dt.datetime.fromtimestamp(todays.timestamp_ms / 1000, dt.UTC),
        backfilled=backfilled,
        gap=gap,
        failed=failed,
    )
