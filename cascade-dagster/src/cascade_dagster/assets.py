"""Build Dagster definitions from Cascade assets. Ingestion logic stays in ``cascade.run``."""

import concurrent.futures
import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import dagster as dg
from croniter import croniter
from pydantic import Field

import cascade
from cascade import (
    BRANCH_TAG,
    MAIN,
    PUBLISH_TAG,
    SNAPSHOT_TAG_PREFIX,
    AssetSpec,
    CascadeAsset,
    CascadeConfig,
    CascadeError,
    ConfigurationError,
    IngestionResult,
    PluginLoadError,
    ValidationError,
    configure_logging,
    open_catalog,
    redact,
    table_identifier,
)
from cascade_dagster.checks import AssetChecks
from cascade_dagster.io_manager import IO_MANAGER_KEY, cascade_io_manager
from cascade_dagster.partitions import partition_filter
from cascade_dagster.publishing import build_publish_job
from cascade_dagster.resource import CascadeResource
from cascade_dagster.translator import CascadeTranslator

RESOURCE_KEY = "cascade"
MAX_RUNTIME_TAG = "dagster/max_runtime"
STRICT_PLUGINS_ENV = "CASCADE_DAGSTER_STRICT_PLUGINS"
Emitted = (
    dg.MaterializeResult[Any]
    | dg.AssetMaterialization
    | dg.AssetObservation
    | dg.AssetCheckEvaluation
    | dg.AssetCheckResult
)
Check = TypeVar("Check", dg.AssetCheckResult, dg.AssetCheckEvaluation)
PUBLISH_MODES = ("direct", "audit")  # the values of an asset's publish= (cascade.spec.PUBLISH)


class CascadeRunConfig(dg.Config):
    """Run configuration of a Cascade asset: the branch to write (else the ``cascade/branch`` tag),
    and how to publish (else the ``cascade/publish`` tag, else the asset's ``publish``)."""

    branch: str | None = None
    publish: str | None = Field(default=None, description=f"One of {list(PUBLISH_MODES)}; default: the asset's.")


def partitions_for(asset: CascadeAsset[Any, Any]) -> dg.DailyPartitionsDefinition:
    """Daily partitions from the spec's start date up to and including today (end_offset=1)."""
    return dg.DailyPartitionsDefinition(start_date=asset.spec.start_date.isoformat(), end_offset=1, timezone="UTC")


def resolved_spec(spec: AssetSpec, config: CascadeConfig) -> AssetSpec:
    """The spec with its namespace mapped through ``[namespaces]``: the table its runs write."""
    namespace, _ = table_identifier(spec, config)
    return replace(spec, namespace=namespace)


def build_asset(
    asset: CascadeAsset[Any, Any],
    spec: AssetSpec,
    translator: CascadeTranslator,
    run_budgets: Mapping[dg.AssetKey, float],
) -> dg.AssetsDefinition:
    """One Dagster asset for ``asset``; ``spec`` is its spec with the namespace resolved."""
    partitions = partitions_for(asset)
    translated = translator.get_asset_spec(spec)
    key = translated.key
    checks = AssetChecks(key, spec)
    definition_spec = translated.replace_attributes(
        partitions_def=translated.partitions_def or partitions,
        skippable=True,  # a run on a branch observes the asset instead of materializing main's
    )
    if "dagster/io_manager_key" not in translated.metadata:  # unless the translator chose one
        definition_spec = definition_spec.with_io_manager_key(IO_MANAGER_KEY)

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[definition_spec],
        check_specs=checks.specs(partitions),
        retry_policy=dg.RetryPolicy(max_retries=spec.max_retries, delay=spec.retry_delay_seconds)
        if spec.max_retries
        else None,  # a zero-retry policy would replace the error with "Exceeded max_retries of 0"
        op_tags={MAX_RUNTIME_TAG: str(int(spec.max_runtime_seconds))},
        backfill_policy=translator.get_backfill_policy(spec),
        pool=translator.get_pool(spec),
        can_subset=True,  # makes the checks' outputs optional: a branch run reports no check on main
    )
    def materialize(
        context: dg.AssetExecutionContext, config: CascadeRunConfig, cascade: CascadeResource
    ) -> Iterator[Emitted]:
        if key not in context.selected_asset_keys:
            return  # the check alone was selected: it is evaluated by the ingestion, never on its own
        bound_run(context, run_budgets)
        partition_keys = list(context.partition_keys)
        branch = config.branch or context.run.tags.get(BRANCH_TAG)
        publish = publish_mode(spec, config.publish or context.run.tags.get(PUBLISH_TAG))
        tags = {
            **context.run.tags,
            PUBLISH_TAG: publish,
            f"{SNAPSHOT_TAG_PREFIX}dagster.run-id": context.run.run_id,
            f"{SNAPSHOT_TAG_PREFIX}dagster.step-key": context.get_step_execution_context().step.key,
        }
        resource_config = cascade.cascade_config()
        done: list[tuple[IngestionResult, dict[str, Any]]] = []
        for position, partition in enumerate(partition_keys):
            try:
                result = run_with_timeout(asset, partition, branch, tags, resource_config)
            except (CascadeError, dg.Failure) as error:
                yield from report_partial(key, done)
                failed = checks.failed(error, partition) if isinstance(error, CascadeError) else []
                if len(partition_keys) > 1:
                    yield from selected(context, key, [checks.evaluation(c, partition) for c in failed])
                else:
                    yield from selected(context, key, failed)
                raise partition_failure(spec.name, error, partition, done, partition_keys[position + 1 :]) from error
            done.append((result, result_metadata(result, resource_config)))
        yield from report(context, checks, done, audited=publish == "audit")

    return materialize


def bound_run(context: dg.AssetExecutionContext, run_budgets: Mapping[dg.AssetKey, float]) -> None:
    """Give the run the ``dagster/max_runtime`` tag that run monitoring reads, however it was launched.

    Runs of the per-asset jobs and schedules carry the tag from the job; runs of Dagster's implicit
    asset job (UI "Materialize", ``dagster asset materialize``, backfills) carry none, so the first
    Cascade step tags its own run: the budgets of the run's Cascade assets times its partitions.
    """
    selected = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
    needed = int(sum(run_budgets.get(k, 0) for k in selected) * max(1, len(context.partition_keys)))
    current = context.instance.get_run_by_id(context.run.run_id)
    present = current.tags.get(MAX_RUNTIME_TAG) if current is not None else None
    if present is None or float(present) < needed:
        context.instance.add_run_tags(context.run.run_id, {MAX_RUNTIME_TAG: str(needed)})


def publish_mode(spec: AssetSpec, asked: str | None) -> str:
    """How the run publishes: as asked by run config or the ``cascade/publish`` tag, else as the asset says."""
    mode = asked or spec.publish
    if mode not in PUBLISH_MODES:
        raise dg.Failure(
            description=f"asset {spec.name!r}: publish={mode!r} is not one of {list(PUBLISH_MODES)}; nothing was run",
            allow_retries=False,
        )
    return mode


def report(
    context: dg.AssetExecutionContext,
    checks: AssetChecks,
    done: Sequence[tuple[IngestionResult, dict[str, Any]]],
    *,
    audited: bool,
) -> Iterator[Emitted]:
    """Materializations and checks on main; observations only on any other branch."""
    key = checks.key
    if any(result.branch != MAIN for result, _ in done):
        for result, metadata in done:
            yield dg.AssetObservation(asset_key=key, partition=result.partition, metadata=metadata)
        return
    if len(done) == 1:
        [(result, metadata)] = done
        results = selected(context, key, checks.passed(result, audited=audited))
        yield dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=results)
        return
    for result, metadata in done:
        context.add_asset_metadata(metadata, asset_key=key, partition_key=result.partition)
        passed = checks.passed(result, audited=audited)
        yield from selected(context, key, [checks.evaluation(c, result.partition) for c in passed])
    yield dg.MaterializeResult(asset_key=key)


def selected(context: dg.AssetExecutionContext, key: dg.AssetKey, results: Sequence[Check]) -> list[Check]:
    """The results of the checks this run selected: a run may select some of the asset's checks."""
    chosen = context.selected_asset_check_keys
    return [r for r in results if dg.AssetCheckKey(key, r.check_name or "") in chosen]


def report_partial(key: dg.AssetKey, done: Sequence[tuple[IngestionResult, dict[str, Any]]]) -> Iterator[Emitted]:
    """Before a failure in a run of several partitions: the partitions it committed, as committed."""
    for result, metadata in done:
        if result.branch == MAIN:
            yield dg.AssetMaterialization(asset_key=key, partition=result.partition, metadata=metadata)
        else:
            yield dg.AssetObservation(asset_key=key, partition=result.partition, metadata=metadata)


def partition_failure(
    asset: str,
    error: CascadeError | dg.Failure,
    partition: str,
    done: Sequence[tuple[IngestionResult, dict[str, Any]]],
    not_run: Sequence[str],
) -> dg.Failure:
    message = (error.description or "") if isinstance(error, dg.Failure) else str(error)
    committed = [result.partition for result, _ in done]
    if committed or not_run:
        message += (
            f" (partition {partition} of asset {asset!r} failed; committed before it: "
            f"{', '.join(committed) or 'none'}; not run: {', '.join(not_run) or 'none'})"
        )
    retry = error.allow_retries if isinstance(error, dg.Failure) else error.transient
    return dg.Failure(
        description=message,
        allow_retries=retry and not isinstance(error, ValidationError),
        metadata={
            "failed_partition": partition,
            "committed_partitions": ", ".join(committed),
            "not_run_partitions": ", ".join(not_run),
        },
    )


def run_with_timeout(
    asset: CascadeAsset[Any, Any], partition: str, branch: str | None, tags: dict[str, str], config: CascadeConfig
) -> IngestionResult:
    """``cascade.run`` bounded by ``max_runtime_seconds``: the step fails when the budget is spent.

    The core also checks the budget before committing, so a run that outlives the step commits nothing.
    """
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


def result_metadata(result: IngestionResult, config: CascadeConfig) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "table": result.table,
        "dagster/table_name": result.table,
        "branch": result.branch,
        "partition": result.partition,
        "rows_extracted": result.rows_extracted,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "rows_unchanged": result.rows_unchanged,
        "rows_deleted": result.rows_deleted,
        "run_id": result.run_id,
        **{f"seconds_{phase}": dg.MetadataValue.float(round(s, 4)) for phase, s in result.phase_seconds.items()},
    }
    if result.quarantine is not None:
        metadata["rows_quarantined"] = result.quarantine.rows_quarantined
        metadata["quarantine_table"] = result.quarantine.table
    if result.audit is not None and result.audit.snapshot_id is not None:
        metadata["audited_snapshot_id"] = str(result.audit.snapshot_id)
        metadata["audit_rounds"] = result.audit.rounds
        metadata["audits"] = list(result.audit.audits)
    catalog = open_catalog(config)
    if not catalog.table_exists(result.table):  # an empty first day commits nothing and creates no table
        return metadata
    table = catalog.load_table(result.table)
    metadata["dagster/uri"] = table.location()
    head = table.snapshot_by_name(result.branch)
    metadata["snapshot_id"] = str(head.snapshot_id if head is not None else result.snapshot_id)
    if head is not None and head.summary is not None and "total-records" in head.summary.additional_properties:
        metadata["dagster/row_count"] = int(head.summary.additional_properties["total-records"])
    if head is not None and not table.spec().is_unpartitioned():
        rows = partition_filter(table.spec(), table.schema(), [result.partition], table=result.table)
        metadata["dagster/partition_row_count"] = table.scan(row_filter=rows, snapshot_id=head.snapshot_id).count()
    return metadata


def build_schedule(asset: CascadeAsset[Any, Any], job: Any) -> dg.ScheduleDefinition:
    """Refresh today's partition on every tick, and yesterday's on the first tick of a new day.

    A plain schedule on the last complete partition would re-ingest yesterday all day and never
    today; late data for yesterday is picked up by the first run after midnight. Days before the
    spec's ``start_date`` are not partitions and are never asked for.
    """
    cron = asset.spec.cron
    assert cron is not None
    first = asset.spec.start_date.isoformat()

    @dg.schedule(name=f"{asset.spec.name}_schedule", cron_schedule=cron, job=job, execution_timezone="UTC")
    def refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        tick = context.scheduled_execution_time
        days = [day for day in days_to_refresh(cron, tick) if day >= first]
        if not days:
            return dg.SkipReason(f"asset {asset.spec.name!r}: partitions start on {first}")
        return [dg.RunRequest(run_key=f"{day}@{tick.isoformat()}", partition_key=day) for day in days]

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


def discovered_assets(strict: bool | None) -> list[CascadeAsset[Any, Any]]:
    """Every installed Cascade asset; a plugin that failed to import is logged, or fatal when ``strict``."""
    discovery = cascade.discover()
    if strict is None:
        strict = os.environ.get(STRICT_PLUGINS_ENV, "").lower() in ("1", "true", "yes")
    reasons = [plugin_failure(failure) for failure in discovery.failures]
    for reason in reasons:
        dg.get_dagster_logger("cascade_dagster").error(reason)
    if strict and reasons:
        raise ConfigurationError(f"{'; '.join(reasons)} (unset {STRICT_PLUGINS_ENV} to load the others)")
    return list(discovery.assets)


def plugin_failure(failure: PluginLoadError) -> str:
    reason = redact(f"{type(failure.error).__name__}: {failure.error}")
    return f"Cascade plugin {failure.plugin!r} failed to load, its assets are missing: {reason}"


def build_definitions(
    assets: Sequence[CascadeAsset[Any, Any]] | None = None,
    *,
    config: CascadeResource | None = None,
    translator: CascadeTranslator | None = None,
    strict_plugins: bool | None = None,
) -> dg.Definitions:
    """Dagster definitions for ``assets`` (default: every asset ``cascade.discover()`` finds).

    ``strict_plugins`` (default: the ``CASCADE_DAGSTER_STRICT_PLUGINS`` variable) makes a plugin
    that fails to import fail the definitions instead of being logged and left out.
    """
    translator = translator or CascadeTranslator()
    resource = config or CascadeResource()
    cascade_config = resource.cascade_config()
    chosen = list(assets) if assets is not None else discovered_assets(strict_plugins)
    specs = [resolved_spec(asset.spec, cascade_config) for asset in chosen]
    keys = [translator.get_asset_spec(spec).key for spec in specs]
    run_budgets = {key: spec.max_runtime_seconds for key, spec in zip(keys, specs, strict=True)}
    definitions = [build_asset(asset, spec, translator, run_budgets) for asset, spec in zip(chosen, specs, strict=True)]
    jobs: list[Any] = [build_publish_job(spec, key) for spec, key in zip(specs, keys, strict=True)]
    schedules = []
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
        resources={RESOURCE_KEY: resource, IO_MANAGER_KEY: cascade_io_manager},
    )
