"""Build Dagster definitions from Cascade assets. Ingestion logic stays in ``cascade.run``."""

import concurrent.futures
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
from croniter import croniter

import cascade
from cascade import CascadeAsset, IngestionResult
from cascade.catalog import open_catalog
from cascade.errors import CascadeError, ValidationError
from cascade.logs import configure_logging
from cascade.runner import BRANCH_TAG
from cascade_dagster.resource import CascadeResource
from cascade_dagster.translator import CascadeTranslator

RESOURCE_KEY = "cascade"
VALIDATION_CHECK = "validation"
MAX_RUNTIME_TAG = "dagster/max_runtime"


class CascadeRunConfig(dg.Config):
    """Run configuration of a Cascade asset: the branch to write (else the ``cascade/branch`` tag)."""

    branch: str | None = None


def partitions_for(asset: CascadeAsset[Any, Any]) -> dg.DailyPartitionsDefinition:
    """Daily partitions from the spec's start date up to and including today (end_offset=1)."""
    return dg.DailyPartitionsDefinition(start_date=asset.spec.start_date.isoformat(), end_offset=1, timezone="UTC")


def build_asset(asset: CascadeAsset[Any, Any], translator: CascadeTranslator) -> dg.AssetsDefinition:
    spec = asset.spec
    dagster_spec = translator.get_asset_spec(spec)
    check = dg.AssetCheckSpec(VALIDATION_CHECK, asset=dagster_spec.key, description="Pandera validation of the batch")

    @dg.asset(
        key=dagster_spec.key,
        group_name=dagster_spec.group_name,
        description=dagster_spec.description,
        kinds=dagster_spec.kinds,
        metadata=dagster_spec.metadata,
        freshness_policy=dagster_spec.freshness_policy,
        partitions_def=partitions_for(asset),
        retry_policy=dg.RetryPolicy(max_retries=spec.max_retries, delay=spec.retry_delay_seconds)
        if spec.max_retries
        else None,  # a zero-retry policy would replace the error with "Exceeded max_retries of 0"
        op_tags={MAX_RUNTIME_TAG: str(int(spec.max_runtime_seconds))},
        check_specs=[check],
    )
    def materialize(
        context: dg.AssetExecutionContext, config: CascadeRunConfig, cascade: CascadeResource
    ) -> Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]:
        branch = config.branch or context.run.tags.get(BRANCH_TAG)
        try:
            result = run_with_timeout(asset, context.partition_key, branch, dict(context.run.tags), cascade)
        except ValidationError as error:
            yield dg.AssetCheckResult(
                check_name=VALIDATION_CHECK,
                asset_key=dagster_spec.key,
                passed=False,
                metadata={
                    "failed_checks": [f"{c.column}: {c.check} ({c.failure_count} rows)" for c in error.failed_checks],
                    "failing_rows": dg.MetadataValue.md(f"```\n{error.failing_rows}\n```"),
                },
            )
            raise dg.Failure(description=str(error), allow_retries=False) from error
        except CascadeError as error:
            raise dg.Failure(description=str(error), allow_retries=error.transient) from error
        yield dg.MaterializeResult(
            metadata=result_metadata(result, cascade),
            check_results=[
                dg.AssetCheckResult(
                    check_name=VALIDATION_CHECK,
                    passed=result.validation.passed,
                    metadata={"model": result.validation.model or "none", "rows": result.validation.rows},
                )
            ],
        )

    return materialize


def run_with_timeout(
    asset: CascadeAsset[Any, Any], partition: str, branch: str | None, tags: dict[str, str], resource: CascadeResource
) -> IngestionResult:
    """``cascade.run`` bounded by ``max_runtime_seconds``: the step fails when the budget is spent.

    The core also checks the budget before committing, so a run that outlives the step commits nothing.
    """
    config = resource.cascade_config()
    configure_logging(config.log_format, config.log_level)  # the adapter decides output, not the core library
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascade-run")
    future = executor.submit(cascade.run, asset, partition, branch=branch, tags=tags, config=config)
    try:
        return future.result(timeout=asset.spec.max_runtime_seconds)
    except concurrent.futures.TimeoutError:
        raise dg.Failure(
            description=(
                f"asset {asset.spec.name!r}, partition {partition}: exceeded max_runtime_seconds="
                f"{asset.spec.max_runtime_seconds:g}; nothing was committed"
            ),
            allow_retries=True,
        ) from None
    finally:
        executor.shutdown(wait=False)


def result_metadata(result: IngestionResult, resource: CascadeResource) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "table": result.table,
        "branch": result.branch,
        "partition": result.partition,
        "rows_extracted": result.rows_extracted,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "rows_unchanged": result.rows_unchanged,
        "snapshot_id": str(result.snapshot_id),
        "run_id": result.run_id,
        **{f"seconds_{phase}": dg.MetadataValue.float(round(s, 4)) for phase, s in result.phase_seconds.items()},
    }
    table = open_catalog(resource.cascade_config()).load_table(result.table)
    head = table.snapshot_by_name(result.branch)
    if head is not None and head.summary is not None and "total-records" in head.summary.additional_properties:
        metadata["dagster/row_count"] = int(head.summary.additional_properties["total-records"])
    return metadata


def build_schedule(asset: CascadeAsset[Any, Any], job: Any) -> dg.ScheduleDefinition:
    """Refresh today's partition on every tick, and yesterday's on the first tick of a new day.

    A plain schedule on the last complete partition would re-ingest yesterday all day and never
    today; late data for yesterday is picked up by the first run after midnight.
    """
    cron = asset.spec.cron
    assert cron is not None

    @dg.schedule(name=f"{asset.spec.name}_schedule", cron_schedule=cron, job=job, execution_timezone="UTC")
    def refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        tick = context.scheduled_execution_time
        return [
            dg.RunRequest(run_key=f"{day}@{tick.isoformat()}", partition_key=day) for day in days_to_refresh(cron, tick)
        ]

    return refresh


def days_to_refresh(cron: str, tick: dt.datetime) -> list[str]:
    """Today's partition, and yesterday's too when ``tick`` is the first tick of its day."""
    tick = tick.astimezone(dt.UTC)
    today = tick.date()
    previous = croniter(cron, tick).get_prev(dt.datetime)
    days = [today.isoformat()]
    if previous.astimezone(dt.UTC).date() < today:
        days.append((today - dt.timedelta(days=1)).isoformat())
    return days


def build_definitions(
    assets: Sequence[CascadeAsset[Any, Any]] | None = None,
    *,
    config: CascadeResource | None = None,
    translator: CascadeTranslator | None = None,
) -> dg.Definitions:
    """Dagster definitions for ``assets`` (default: every asset ``cascade.discover()`` finds)."""
    translator = translator or CascadeTranslator()
    chosen = list(assets) if assets is not None else list(cascade.discover().assets)
    definitions = [build_asset(asset, translator) for asset in chosen]
    jobs, schedules = [], []
    for asset, definition in zip(chosen, definitions, strict=True):
        job = dg.define_asset_job(
            name=f"{asset.spec.name}_job",
            selection=dg.AssetSelection.assets(definition),
            tags={MAX_RUNTIME_TAG: str(int(asset.spec.max_runtime_seconds))},
        )
        jobs.append(job)
        if asset.spec.cron:
            schedules.append(build_schedule(asset, job))
    return dg.Definitions(
        assets=definitions,
        jobs=jobs,
        schedules=schedules,
        resources={RESOURCE_KEY: config or CascadeResource()},
    )
