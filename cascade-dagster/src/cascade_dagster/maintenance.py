"""A Dagster job and schedule that maintain every Cascade table: ``cascade.maintenance`` under Dagster.

Each table's outcome is an ``AssetObservation`` of the table's asset key (``[namespace, table]``)
with what every step removed and rewrote; the op's output carries the totals.

    defs = dg.Definitions.merge(build_definitions(), maintenance_definitions())

The schedule runs daily (``[maintenance] schedule`` in ``cascade.toml``, else ``0 3 * * *``);
the job's config overrides the ``[maintenance]`` defaults per run.
"""

import dataclasses
from typing import Any

import dagster as dg
from pydantic import Field

from cascade import (
    MaintenancePolicy,
    MaintenanceReport,
    all_tables,
    load_config,
    maintain,
    open_catalog,
    parse_duration,
    parse_size,
)
from cascade_dagster.resource import CascadeResource

JOB_NAME = "cascade_maintenance"
SCHEDULE_NAME = "cascade_maintenance_schedule"


class MaintenanceRunConfig(dg.Config):
    """Per-run overrides of ``[maintenance]``; unset fields keep the configured defaults."""

    tables: list[str] = Field(default_factory=list, description="namespace.table names; empty: every table.")
    expire: bool = Field(default=True, description="Expire old snapshots.")
    expire_older_than: str | None = Field(default=None, description="e.g. 7d")
    retain_last: int | None = Field(default=None, description="Snapshots each branch keeps at least.")
    compact: bool | None = None
    target_file_size: str | None = Field(default=None, description="e.g. 128MB")
    rewrite_manifests: bool | None = None
    remove_orphans: bool | None = None
    orphan_older_than: str | None = Field(default=None, description="e.g. 3d")
    dry_run: bool = False

    def policy(self, defaults: MaintenancePolicy) -> MaintenancePolicy:
        changes: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("retain_last", "compact", "rewrite_manifests", "remove_orphans")
            if getattr(self, name) is not None
        }
        if self.expire_older_than is not None:
            changes["expire_older_than"] = parse_duration(self.expire_older_than, what="expire_older_than")
        if self.orphan_older_than is not None:
            changes["orphan_older_than"] = parse_duration(self.orphan_older_than, what="orphan_older_than")
        if self.target_file_size is not None:
            changes["target_file_size"] = parse_size(self.target_file_size, what="target_file_size")
        return dataclasses.replace(defaults, **changes)


@dg.op(description="Compact, rewrite manifests, expire snapshots and remove orphans of every Cascade table.")
def maintain_tables(
    context: dg.OpExecutionContext, config: MaintenanceRunConfig, cascade: CascadeResource
) -> dg.Output[int]:
    settings = cascade.cascade_config()
    policy = config.policy(settings.maintenance)
    catalog = open_catalog(settings)
    names = config.tables or all_tables(catalog)
    reports: list[MaintenanceReport] = []
    failures: dict[str, str] = {}
    for name in names:
        try:
            report = maintain(
                catalog.load_table(name),
                policy,
                expire=config.expire,
                dry_run=config.dry_run,
                attempts=settings.commit_attempts,
            )
        except Exception as error:  # one table failing does not stop the others; the op fails at the end
            failures[name] = f"{type(error).__name__}: {error}"
            context.log.error(f"maintenance of table {name} failed: {failures[name]}")
            continue
        reports.append(report)
        context.log_event(dg.AssetObservation(asset_key=dg.AssetKey(name.split(".")), metadata=report_metadata(report)))
    if failures:
        raise dg.Failure(
            description=f"maintenance failed for table(s) {', '.join(sorted(failures))}",
            metadata={"failures": dg.MetadataValue.json(failures), "tables_maintained": len(reports)},
        )
    return dg.Output(len(reports), metadata=totals_metadata(reports, config.dry_run))


def report_metadata(report: MaintenanceReport) -> dict[str, Any]:
    """What each step removed and rewrote on one table, as Dagster metadata."""
    metadata: dict[str, Any] = {"table": report.table, "dry_run": report.dry_run, "seconds": report.seconds}
    if report.compaction:
        metadata |= {
            "compaction/partitions": report.compaction.partitions,
            "compaction/files_removed": report.compaction.files_removed,
            "compaction/files_added": report.compaction.files_added,
            "compaction/bytes_removed": report.compaction.bytes_removed,
            "compaction/bytes_added": report.compaction.bytes_added,
        }
    if report.manifests:
        metadata |= {
            "manifests/before": report.manifests.manifests_before,
            "manifests/after": report.manifests.manifests_after,
        }
    if report.expiry:
        metadata |= {
            "expiry/snapshots_expired": len(report.expiry.snapshots_expired),
            "expiry/snapshots_kept": report.expiry.snapshots_kept,
        }
    if report.orphans:
        metadata |= {
            "orphans/files_removed": len(report.orphans.files_removed),
            "orphans/bytes_removed": report.orphans.bytes_removed,
            "orphans/files_too_young": report.orphans.files_too_young,
        }
    return metadata


def totals_metadata(reports: list[MaintenanceReport], dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "tables": len(reports),
        "files_compacted": sum(r.compaction.files_removed for r in reports if r.compaction),
        "manifests_removed": sum(
            r.manifests.manifests_before - r.manifests.manifests_after for r in reports if r.manifests
        ),
        "snapshots_expired": sum(len(r.expiry.snapshots_expired) for r in reports if r.expiry),
        "orphan_files_removed": sum(len(r.orphans.files_removed) for r in reports if r.orphans),
        "reports": dg.MetadataValue.json([r.as_dict() for r in reports]),
    }


@dg.job(name=JOB_NAME, description="Maintain every Cascade table (cascade.maintenance).")
def maintenance_job() -> None:
    maintain_tables()


def maintenance_definitions(schedule: str | None = None) -> dg.Definitions:
    """The maintenance job and its schedule (``[maintenance] schedule``, daily by default).

    It uses the ``cascade`` resource that :func:`cascade_dagster.build_definitions` provides;
    merge the two with ``dg.Definitions.merge``.
    """
    cron = schedule or load_config().maintenance.schedule
    return dg.Definitions(
        jobs=[maintenance_job],
        schedules=[dg.ScheduleDefinition(name=SCHEDULE_NAME, job=maintenance_job, cron_schedule=cron)],
    )
