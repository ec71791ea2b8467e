"""``cascade.run``: one partition of one asset, phase by phase, orchestrator-agnostic.

    resolve -> extract -> stage -> validate -> merge (+ commit) -> report

Each phase is a small function with plain inputs and outputs; ``run`` only strings them
together, times them and traces them. A failure in any phase leaves the table as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import pyarrow as pa
from pyiceberg.table import Table

from cascade.catalog import (
    check_branch_name,
    describe_catalog,
    ensure_branch,
    ensure_table,
    first_line,
    open_catalog,
    storage_endpoint,
    table_identifier,
    writer_lock,
)
from cascade.config import CascadeConfig, load_config
from cascade.conform import conform, reject_null_keys
from cascade.context import RunContext, running
from cascade.errors import (
    CascadeError,
    CatalogError,
    ConfigurationError,
    RunError,
    RunTimeoutError,
    SchemaMismatchError,
    SourceError,
    StagingError,
    StorageError,
    TransientSourceError,
)
from cascade.faults import crash_point
from cascade.ingestion import CascadeAsset
from cascade.logs import configure_logging
from cascade.merge import MergeOutcome, MergePlan, merge_into
from cascade.plugins import hooks
from cascade.redaction import redact
from cascade.registry import registry
from cascade.results import IngestionResult
from cascade.spec import INGESTED_AT
from cascade.staging import (
    MultipleTablesError,
    NestedDataError,
    PipelinePlace,
    StagedBatch,
    extract,
    make_pipeline,
    pipeline_place,
    remove_pipeline,
    stage,
    underlying_errors,
)
from cascade.telemetry import configure_from_environment, log, record_failure, record_rows, traced
from cascade.validation import ValidationReport, raise_for_report, validate_batch

BRANCH_TAG = "cascade/branch"
# A run tag ``cascade/snapshot/<key>`` becomes snapshot summary property ``<key>`` (orchestrator run ids).
SNAPSHOT_TAG_PREFIX = "cascade/snapshot/"
MAIN = "main"


@dataclass(frozen=True)
class ResolvedRun:
    """Everything decided before any data moves."""

    asset: CascadeAsset[Any, Any]
    partition: str
    branch: str
    namespace: str
    table_name: str
    run_id: str
    ingested_at: dt.datetime
    config: CascadeConfig
    context: RunContext
    place: PipelinePlace

    @property
    def identifier(self) -> str:
        return f"{self.namespace}.{self.table_name}"

    @property
    def snapshot_properties(self) -> dict[str, str]:
        tagged = self.context.tags.items()
        return {
            **{k.removeprefix(SNAPSHOT_TAG_PREFIX): v for k, v in tagged if k.startswith(SNAPSHOT_TAG_PREFIX)},
            "cascade.run-id": self.run_id,
            "cascade.asset": self.asset.spec.name,
            "cascade.partition": self.partition,
            "cascade.branch": self.branch,
        }


def run(
    asset: CascadeAsset[Any, Any] | str,
    partition_date: str,
    *,
    branch: str | None = None,
    tags: Mapping[str, str] | None = None,
    config: CascadeConfig | None = None,
    run_id: str | None = None,
) -> IngestionResult:
    """Ingest one partition of ``asset`` into its Iceberg table and return what happened."""
    if isinstance(asset, str):
        asset = registry().get(asset)
    configure_from_environment()
    timings: dict[str, float] = {}
    with traced("run", asset=asset.spec.name, partition=partition_date) as run_span:
        with traced("resolve", timings, asset=asset.spec.name):
            resolved = resolve(asset, partition_date, branch=branch, tags=tags or {}, config=config, run_id=run_id)
        run_span.set_attributes(
            {
                "cascade.table": resolved.identifier,
                "cascade.namespace": resolved.namespace,
                "cascade.branch": resolved.branch,
                "cascade.partition": resolved.partition,
                "cascade.run_id": resolved.run_id,
            }
        )
        hooks().config_loaded(resolved.config)
        hooks().run_started(resolved.context)
        bound = log.bind(
            asset=asset.spec.name, partition=resolved.partition, branch=resolved.branch, run_id=resolved.run_id
        )
        bound.info("run started", table=resolved.identifier)
        try:
            result = _run_phases(resolved, timings)
        except Exception as error:
            failure = (
                error
                if isinstance(error, CascadeError)
                else RunError(
                    f"{type(error).__name__}: {redact(str(error))}", asset=asset.spec.name, partition=resolved.partition
                )
            )
            bound.error("run failed", error=type(failure).__name__, message=redact(str(failure)))
            record_failure(asset.spec.name, resolved.identifier, failure)
            hooks().run_failed(resolved.context, failure)
            if failure is error:
                raise
            raise failure from error
        run_span.set_attributes(
            {
                "cascade.rows_extracted": result.rows_extracted,
                "cascade.rows_inserted": result.rows_inserted,
                "cascade.rows_updated": result.rows_updated,
                "cascade.rows_unchanged": result.rows_unchanged,
                "cascade.snapshot_id": result.snapshot_id or -1,
                "cascade.commit_attempts": result.merge.commit_attempts,
            }
        )
        record_rows(asset.spec.name, resolved.identifier, result.rows_inserted + result.rows_updated)
        bound.info("run finished", **{k: v for k, v in result.as_dict().items() if k.startswith("rows_")})
        hooks().after_commit(resolved.context, result)
        return result


def _run_phases(resolved: ResolvedRun, timings: dict[str, float]) -> IngestionResult:
    spec = resolved.asset.spec
    where = {"asset": spec.name, "table": resolved.identifier}
    try:
        with traced("extract", timings, **where):
            pipeline = extract_source(resolved)
        crash_point("after-extract")
        check_deadline(resolved, "extract")
        with traced("stage", timings, **where) as span:
            staged = stage_batch(resolved, pipeline)
            staged = replace(staged, data=hooks().after_extract(resolved.context, staged.data))
            span.set_attributes({"cascade.rows_out": staged.data.num_rows, "cascade.bytes_staged": staged.bytes_staged})
        crash_point("after-stage")
        check_deadline(resolved, "stage")
        with traced("validate", timings, rows_in=staged.data.num_rows, **where) as span:
            rows, report = validate(resolved, staged.data)
            span.set_attributes({"cascade.rows_out": rows.num_rows, "cascade.validation_passed": report.passed})
        crash_point("after-validate")
        check_deadline(resolved, "validate")
        with traced("merge", timings, rows_in=rows.num_rows, **where) as span:
            outcome = merge(resolved, rows, before_commit=lambda plan: hooks().before_commit(resolved.context, plan))
            span.set_attributes(
                {
                    "cascade.rows_inserted": outcome.rows_inserted,
                    "cascade.rows_updated": outcome.rows_updated,
                    "cascade.rows_unchanged": outcome.rows_unchanged,
                    "cascade.snapshot_id": outcome.snapshot_id or -1,
                    "cascade.commit_attempts": outcome.commit_attempts,
                }
            )
    finally:
        if not resolved.config.keep_staging:
            remove_pipeline(resolved.place)
    return report_result(resolved, staged, report, outcome, timings)


def resolve_branch(explicit: str | None, tags: Mapping[str, str], config: CascadeConfig) -> str:
    """Explicit argument, else the run tag ``cascade/branch``, else ``CASCADE_BRANCH``/config, else main."""
    return check_branch_name(explicit or tags.get(BRANCH_TAG) or config.branch or MAIN)


def check_partition(asset: str, partition_date: str) -> str:
    try:
        return dt.date.fromisoformat(partition_date).isoformat()
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"asset {asset!r}: partition date {partition_date!r} is not a date (YYYY-MM-DD)"
        ) from None


def resolve(
    asset: CascadeAsset[Any, Any],
    partition_date: str,
    *,
    branch: str | None,
    tags: Mapping[str, str],
    config: CascadeConfig | None,
    run_id: str | None = None,
) -> ResolvedRun:
    """Decide the branch, table, run id and pipeline folder; touches nothing."""
    config = config or load_config()
    configure_logging(config.log_format, config.log_level)
    partition = check_partition(asset.spec.name, partition_date)
    chosen_branch = resolve_branch(branch, tags, config)
    namespace, table_name = table_identifier(asset.spec, config)
    run_id = run_id or uuid.uuid4().hex[:16]
    deadline = time.monotonic() + asset.spec.max_runtime_seconds
    context = RunContext(
        asset=asset.spec.name,
        partition_date=partition,
        branch=chosen_branch,
        run_id=run_id,
        config=config,
        deadline=deadline,
        max_runtime_seconds=asset.spec.max_runtime_seconds,
        tags=MappingProxyType(dict(tags)),
    )
    return ResolvedRun(
        asset=asset,
        partition=partition,
        branch=chosen_branch,
        namespace=namespace,
        table_name=table_name,
        run_id=run_id,
        ingested_at=dt.datetime.now(dt.UTC),
        config=config,
        context=context,
        place=pipeline_place(config.home, f"{namespace}.{table_name}", chosen_branch, partition, run_id),
    )


def check_deadline(resolved: ResolvedRun, after: str) -> None:
    if resolved.context.remaining_seconds() <= 0:
        raise RunTimeoutError(
            f"exceeded max_runtime_seconds={resolved.asset.spec.max_runtime_seconds:g} during {after}; "
            "nothing was committed",
            asset=resolved.asset.spec.name,
            partition=resolved.partition,
        )


def extract_source(resolved: ResolvedRun) -> Any:
    """Call the asset function and let dlt pull every record; returns the dlt pipeline."""
    asset = resolved.asset
    kwargs = {"context": resolved.context} if asset.accepts_context else {}
    try:
        with running(resolved.context):
            source = asset.fn(resolved.partition, **kwargs)
            pipeline = make_pipeline(resolved.place, dataset=resolved.namespace)
            extract(pipeline, source)
    except CascadeError:
        raise
    except Exception as error:
        raise source_error(error, asset=asset.spec.name, partition=resolved.partition) from error
    return pipeline


def source_error(error: BaseException, *, asset: str, partition: str) -> RunError:
    """Turn what a dlt source raised into Cascade's error, transient or terminal, secrets masked."""
    for cause in underlying_errors(error):
        if isinstance(cause, CascadeError) and isinstance(cause, RunError):
            return cause
        response = getattr(cause, "response", None)
        status = getattr(response, "status_code", None)
        if status is not None:
            url = redact(str(getattr(response, "url", "")))
            message = f"HTTP {status} from {url}: {_status_hint(status)}"
            kind = TransientSourceError if status == 429 or status >= 500 else SourceError
            return kind(message, asset=asset, partition=partition)
        if isinstance(cause, json.JSONDecodeError) or type(cause).__name__ == "JSONDecodeError":
            return SourceError(
                f"the source returned malformed JSON: {redact(str(cause))}", asset=asset, partition=partition
            )
        if type(cause).__name__ in ("ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout"):
            return TransientSourceError(
                f"could not reach the source: {type(cause).__name__}: {redact(str(cause))}",
                asset=asset,
                partition=partition,
            )
    innermost = list(underlying_errors(error))[-1]
    return SourceError(
        f"the source failed: {type(innermost).__name__}: {redact(str(innermost))}", asset=asset, partition=partition
    )


def _status_hint(status: int) -> str:
    hints = {
        401: "unauthorized: check the token or secret",
        403: "forbidden: check the token's permissions",
        404: "not found: check the base URL and path",
        429: "rate limited",
    }
    return hints.get(status, "server error" if status >= 500 else "request failed")


def stage_batch(resolved: ResolvedRun, pipeline: Any) -> StagedBatch:
    """Normalize through dlt to parquet, then stamp every row with this run's ``_cascade_ingested_at``."""
    try:
        staged = stage(pipeline)
    except (NestedDataError, MultipleTablesError) as error:
        raise StagingError(str(error), asset=resolved.asset.spec.name, partition=resolved.partition) from None
    except Exception as error:
        raise source_error(error, asset=resolved.asset.spec.name, partition=resolved.partition) from error
    stamp = pa.array([resolved.ingested_at] * staged.data.num_rows, pa.timestamp("us", tz="UTC"))
    data = staged.data.drop_columns([c for c in (INGESTED_AT,) if c in staged.data.column_names])
    return StagedBatch(data.append_column(INGESTED_AT, stamp), staged.files, staged.bytes_staged, staged.resource)


def validate(resolved: ResolvedRun, staged: pa.Table) -> tuple[pa.Table, ValidationReport]:
    """Conform to the table schema, then run the Pandera model; raises on any failure."""
    spec = resolved.asset.spec
    where = f"asset {spec.name!r}, partition {resolved.partition}"
    rows = conform(staged, spec.table_schema, where=where)
    reject_null_keys(rows, spec.unique_key, where=where)
    model = spec.validation_schema if spec.validate else None
    report = validate_batch(rows, model)
    hooks().after_validation(resolved.context, report)
    raise_for_report(report, asset=spec.name, partition=resolved.partition)
    return rows, report


def merge(
    resolved: ResolvedRun, rows: pa.Table, before_commit: Callable[[MergePlan], None] | None = None
) -> MergeOutcome:
    """Create the table and branch when missing, then merge in one atomic snapshot."""
    spec = resolved.asset.spec
    where = f"asset {spec.name!r}, partition {resolved.partition}"
    try:
        return _merge(resolved, rows, before_commit)
    except SchemaMismatchError as error:
        raise SchemaMismatchError(f"{where}: {error}") from None
    except CatalogError as error:
        raise CatalogError(f"{where}: {error}") from None
    except CascadeError:
        raise
    except OSError as error:
        raise StorageError(
            f"{where}: the warehouse storage {storage_endpoint(resolved.config)} failed: "
            f"{type(error).__name__}: {redact(first_line(str(error)))}; nothing was committed"
        ) from None
    except Exception as error:
        if not any(c.__module__.startswith("sqlalchemy") for c in type(error).__mro__):
            raise
        raise CatalogError(
            f"{where}: {describe_catalog(resolved.config)} failed: "
            f"{type(error).__name__}: {redact(first_line(str(error)))}"
        ) from None


def _merge(
    resolved: ResolvedRun, rows: pa.Table, before_commit: Callable[[MergePlan], None] | None = None
) -> MergeOutcome:
    spec = resolved.asset.spec
    catalog = open_catalog(resolved.config)
    table: Table = ensure_table(catalog, (resolved.namespace, resolved.table_name), spec)
    ensure_branch(table, resolved.branch)

    def commit_guard(plan: MergePlan) -> None:
        check_deadline(resolved, "merge")
        if before_commit is not None:
            before_commit(plan)

    with writer_lock(table, resolved.branch, wait_seconds=resolved.context.remaining_seconds()) as locked:
        return merge_into(
            table.refresh() if locked else table,
            rows,
            spec.unique_key,
            branch=resolved.branch,
            snapshot_properties=resolved.snapshot_properties,
            stable_partitions=spec.stable_partitions,
            max_attempts=resolved.config.commit_attempts,
            before_commit=commit_guard,
        )


def report_result(
    resolved: ResolvedRun,
    staged: StagedBatch,
    report: ValidationReport,
    outcome: MergeOutcome,
    timings: Mapping[str, float],
) -> IngestionResult:
    return IngestionResult(
        asset=resolved.asset.spec.name,
        run_id=resolved.run_id,
        table=resolved.identifier,
        branch=resolved.branch,
        partition=resolved.partition,
        rows_extracted=staged.data.num_rows,
        rows_inserted=outcome.rows_inserted,
        rows_updated=outcome.rows_updated,
        rows_unchanged=outcome.rows_unchanged,
        rows_deduplicated=outcome.rows_deduplicated,
        snapshot_id=outcome.snapshot_id,
        committed=outcome.committed,
        staged_files=staged.files,
        bytes_staged=staged.bytes_staged,
        validation=report,
        merge=outcome,
        phase_seconds=MappingProxyType(dict(timings)),
    )
