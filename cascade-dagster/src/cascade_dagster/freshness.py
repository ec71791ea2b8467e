"""Partition-aware freshness under Dagster: a ``freshness`` asset check per Cascade asset, on a schedule.

Dagster's freshness policy judges an asset by its last materialization of any partition, so a
backfill of an old day makes a stale asset look fresh. This check uses the same ledger as
``cascade status`` (:mod:`cascade.coverage`: the table's snapshot summaries, the coverage ledger
expiry keeps, and the run log when installed):

- passes when the newest data is inside the warn window;
- WARN when it is past the warn window, or the newest partition that should exist is missing
  or failed;
- ERROR past the fail window;
- its metadata lists the missing and failed partitions of the last ``days`` days.

    defs = dg.Definitions.merge(build_definitions(), freshness_definitions())

It uses the ``cascade`` resource that :func:`cascade_dagster.build_definitions` provides.
"""

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

import cascade
from cascade import AssetStatus, CascadeAsset, open_catalog, table_identifier, table_status
from cascade_dagster.resource import CascadeResource
from cascade_dagster.translator import CascadeTranslator

FRESHNESS_CHECK = "freshness"
JOB_NAME = "cascade_freshness"
SCHEDULE_NAME = "cascade_freshness_schedule"
DEFAULT_SCHEDULE = "*/15 * * * *"
DEFAULT_DAYS = 30

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_freshness_check(
    asset: CascadeAsset[Any, Any],
    translator: CascadeTranslator,
    *,
    days: int = DEFAULT_DAYS,
    clock: Clock = utc_now,
) -> dg.AssetChecksDefinition:
    """The ``freshness`` check of one asset; ``clock`` gives "now" (tests inject a fixed one)."""
    key = translator.get_asset_spec(asset.spec).key

    @dg.asset_check(
        asset=key,
        name=FRESHNESS_CHECK,
        description=f"Partition-aware freshness of {asset.spec.name}: the newest partition, not the last run",
    )
    def freshness(cascade: CascadeResource) -> dg.AssetCheckResult:
        config = cascade.cascade_config()
        now = clock()
        status = table_status(
            open_catalog(config),
            asset.spec,
            ".".join(table_identifier(asset.spec, config)),
            branch=config.branch or "main",
            now=now,
            since=now.astimezone(dt.UTC).date() - dt.timedelta(days=days - 1),
        )
        return check_result(status, days)

    return freshness


def check_result(status: AssetStatus, days: int) -> dg.AssetCheckResult:
    """The check's outcome and metadata for one asset's status."""
    freshness = status.freshness
    severity = dg.AssetCheckSeverity.ERROR if freshness.level == "fail" else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=freshness.level in ("fresh", "none"),
        severity=severity,
        description=status.summary(),
        metadata={
            "level": freshness.level,
            "reason": freshness.reason,
            "table": status.table,
            "branch": status.branch,
            "expected_partition": freshness.expected,
            "newest_partition": freshness.newest_partition or "none",
            "last_commit_at": freshness.last_commit_at.isoformat() if freshness.last_commit_at else "never",
            "age_hours": dg.MetadataValue.float(freshness.age_hours),
            "warn_hours": dg.MetadataValue.float(freshness.warn_hours) if freshness.warn_hours else "none",
            "fail_hours": dg.MetadataValue.float(freshness.fail_hours) if freshness.fail_hours else "none",
            f"missing_partitions_last_{days}_days": dg.MetadataValue.json(list(status.missing)),
            f"failed_partitions_last_{days}_days": dg.MetadataValue.json(list(status.failed)),
        },
    )


def freshness_definitions(
    assets: Sequence[CascadeAsset[Any, Any]] | None = None,
    *,
    translator: CascadeTranslator | None = None,
    schedule: str = DEFAULT_SCHEDULE,
    days: int = DEFAULT_DAYS,
    clock: Clock = utc_now,
) -> dg.Definitions:
    """A ``freshness`` check per asset (default: every asset ``cascade.discover()`` finds), a job
    that runs them all, and a schedule for it (every 15 minutes unless told otherwise)."""
    translator = translator or CascadeTranslator()
    chosen = list(assets) if assets is not None else list(cascade.discover().assets)
    checks = [build_freshness_check(asset, translator, days=days, clock=clock) for asset in chosen]
    job = dg.define_asset_job(name=JOB_NAME, selection=dg.AssetSelection.checks(*checks))
    return dg.Definitions(
        asset_checks=checks,
        jobs=[job],
        schedules=[dg.ScheduleDefinition(name=SCHEDULE_NAME, job=job, cron_schedule=schedule)],
    )
