"""``cascade.run``: one partition of one asset, phase by phase, orchestrator-agnostic.

    resolve -> extract -> stage -> validate -> merge (+ commit) -> report

Each phase is a small function with plain inputs and outputs; ``run`` only strings them
together, times them and traces them. A failure in any phase leaves the table as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.trace import Span
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from cascade.asset_registry import registry
from cascade.audit import AuditOutcome, audit_branch_name, audit_with, wants_audit, write_audit_publish
from cascade.catalog import (
    describe_catalog,
    ensure_branch,
    ensure_table,
    first_line,
    open_catalog,
    storage_endpoint,
    writer_lock,
)
from cascade.config import CascadeConfig, load_config
from cascade.conformance import conform, reject_null_keys
from cascade.context import RunContext, running
from cascade.errors import (
    AssetDefinitionError,
    CascadeError,
    CatalogError,
    ConfigurationError,
    FailedCheck,
    RunError,
    RunTimeoutError,
    SchemaEvolutionError,
    SchemaMismatchError,
    SourceError,
    StagingError,
    StorageError,
    TransientSourceError,
    ValidationError,
)
from cascade.evolution import check_diff, diff_table, evolve_table
from cascade.faults import crash_point
from cascade.ingestion import REPLACE_NEEDS_A_DAY, CascadeAsset
from cascade.logger import log
from cascade.merge import MergeOutcome, MergePlan, PartitionReplace, merge_into
from cascade.naming import SNAPSHOT_TAG_PREFIX, resolve_branch, table_identifier
from cascade.plugins import hooks
from cascade.quarantine import (
    InvalidRow,
    InvalidTally,
    QuarantineRun,
    QuarantineSummary,
    check_fraction,
    quarantine_identifier,
    split_batch,
    write_quarantine,
)
from cascade.records import (
    BatchKeys,
    RecordGuard,
    RefusedRecord,
    batch_keys,
    column_hints,
    guard_source,
    requested_dispositions,
)
from cascade.redaction import redact
from cascade.results import IngestionResult
from cascade.spec import INGESTED_AT, AssetSpec
from cascade.staging import (
    MultipleTablesError,
    NestedDataError,
    PipelinePlace,
    StagedFiles,
    extract,
    make_pipeline,
    pipeline_place,
    read_column,
    read_staged,
    remove_pipeline,
    stage_files,
    stream_staged,
    underlying_errors,
)
from cascade.telemetry import configure_from_environment, record_failure, record_rows, traced
from cascade.validation import ValidationReport, raise_for_report, unique_columns, validate_batch

WORKING_COPIES = 4  # a batch's rows are held about this many times over while conformed, validated and written


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
    def where(self) -> str:
        """The run in error messages: asset, partition and table."""
        return f"asset {self.asset.spec.name!r}, partition {self.partition}, table {self.identifier}"

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
        return hooks().run(resolved.context, partial(_run_resolved, resolved, timings, run_span))


def _run_resolved(resolved: ResolvedRun, timings: dict[str, float], run_span: Span) -> IngestionResult:
    """The run once resolved, from the first hook to the last: Cascade's own ``cascade_run``."""
    asset = resolved.asset
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
            "cascade.rows_deleted": result.rows_deleted,
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
    # quarantine (issue 18): the guard collects refused records instead of raising
    refused: list[RefusedRecord] | None = [] if spec.on_invalid == "quarantine" else None
    held: Held | None = None
    audited: AuditOutcome | None = None  # write-audit-publish (issue 18)
    audit = wants_audit(spec.publish, resolved.context.tags)
    try:
        with traced("extract", timings, **where):
            check_table(resolved)  # a breaking change to the asset fails here, before the source is called
            pipeline, replacing, keys_ascending = extract_source(resolved, refused)
        crash_point("after-extract")
        check_deadline(resolved, "extract")
        with traced("stage", timings, **where) as span:
            staged = stage_batch(resolved, pipeline)
            # quarantine and write-audit-publish hold the day whole (not yet streamed)
            whole = (
                staged.memory_bytes * WORKING_COPIES <= resolved.config.max_batch_bytes or refused is not None or audit
            )
            batch, keys_distinct = None, False
            if whole:
                given = stamped(resolved, read_staged(staged))
                batch = hooks().after_extract(resolved.context, given)
                keys_distinct = keys_ascending and batch is given  # rows a hook returns may repeat a key
            rows_out = batch.num_rows if batch is not None else staged.rows
            span.set_attributes({"cascade.rows_out": rows_out, "cascade.bytes_staged": staged.bytes_staged})
        crash_point("after-stage")
        check_deadline(resolved, "stage")
        if batch is None:
            report, outcome = validate_and_merge_in_chunks(resolved, staged, replacing, timings, keys_ascending)
        else:
            with traced("validate", timings, rows_in=batch.num_rows, **where) as span:
                if refused is None:
                    rows, report = validate(resolved, batch)
                else:  # quarantine (issue 18)
                    rows, report, held = validate_quarantining(resolved, batch, refused)
                    span.set_attributes(quarantine_attributes(held.summary))
                span.set_attributes({"cascade.rows_out": rows.num_rows, "cascade.validation_passed": report.passed})
            crash_point("after-validate")
            check_deadline(resolved, "validate")
            if held is not None:  # quarantine (issue 18): invalid rows are committed before the valid ones
                commit_quarantine(resolved, held)
                crash_point("after-quarantine")
            with traced("merge", timings, rows_in=rows.num_rows, **where) as span:
                if audit:  # write-audit-publish (issue 18)
                    outcome, audited = merge_audited(resolved, rows, before_commit=veto(resolved), replacing=replacing)
                else:
                    outcome = merge(
                        resolved, rows, before_commit=veto(resolved), replacing=replacing, keys_distinct=keys_distinct
                    )
                span.set_attributes(merge_attributes(outcome))
    finally:
        if not resolved.config.keep_staging:
            remove_pipeline(resolved.place)
    result = report_result(resolved, staged, rows_out, report, outcome, timings)
    return dataclasses.replace(result, quarantine=held.summary if held else None, audit=audited)  # issue 18


def veto(resolved: ResolvedRun) -> Callable[[MergePlan], None]:
    """The ``cascade_before_commit`` hooks, as the merge's last word before each commit."""
    return partial(hooks().before_commit, resolved.context)


def merge_attributes(outcome: MergeOutcome) -> dict[str, int]:
    return {
        "cascade.rows_inserted": outcome.rows_inserted,
        "cascade.rows_updated": outcome.rows_updated,
        "cascade.rows_unchanged": outcome.rows_unchanged,
        "cascade.rows_deleted": outcome.rows_deleted,
        "cascade.snapshot_id": outcome.snapshot_id or -1,
        "cascade.commit_attempts": outcome.commit_attempts,
    }


def validate_and_merge_in_chunks(
    resolved: ResolvedRun,
    staged: StagedFiles,
    replacing: PartitionReplace | None,
    timings: dict[str, float],
    keys_ascending: bool = False,
) -> tuple[ValidationReport, MergeOutcome]:
    """A day larger than ``max_batch_bytes``: conform, validate and merge it a chunk at a time.

    Only the key columns are read whole, to find the records a later one supersedes and to answer
    uniqueness across the whole batch; each chunk is then read, stamped, passed to the
    ``after_extract`` hooks, conformed, validated and merged onto a private branch, and the
    target branch moves to the result in one guarded step (readers see all of the day or none).
    ``keys_ascending``: the source's keys were seen to increase, so none repeats (nothing to find).
    """
    spec = resolved.asset.spec
    where = {"asset": spec.name, "table": resolved.identifier}
    with traced("validate", timings, rows_in=staged.rows, **where):
        keys = batch_keys(staged.files, spec.unique_key, keep_keys=replacing is not None, known_distinct=keys_ascending)
        check_unique_across_chunks(resolved, staged, keys)
    chunk_rows = max(1, staged.rows * resolved.config.max_batch_bytes // max(1, staged.memory_bytes * WORKING_COPIES))
    reports: list[ValidationReport] = []
    validating = 0.0
    hooks_changed_rows = False  # superseded records are gone, so no key repeats, unless a hook added one

    def chunks() -> Iterator[pa.Table]:
        nonlocal validating, hooks_changed_rows
        for chunk in stream_staged(staged, chunk_rows, keys.superseded):
            started = time.perf_counter()
            given = stamped(resolved, chunk)
            hooked = hooks().after_extract(resolved.context, given)
            hooks_changed_rows = hooks_changed_rows or hooked is not given
            rows, report = validate(resolved, hooked)
            if replacing is not None:
                check_rows_in_partition(rows, replacing, spec.unique_key, resolved.where)
            reports.append(report)
            validating += time.perf_counter() - started
            check_deadline(resolved, "validate")
            yield rows

    whole_day = dataclasses.replace(replacing, keep=keys.keys) if replacing is not None else None
    with traced("merge", timings, rows_in=staged.rows, **where) as span:
        outcome = merge(
            resolved,
            chunks(),
            before_commit=veto(resolved),
            replacing=whole_day,
            chunk_rows=chunk_rows,
            keys_distinct=lambda: not hooks_changed_rows,
        )
        span.set_attributes(merge_attributes(outcome))
    timings["validate"] = timings.get("validate", 0.0) + validating
    timings["merge"] -= validating
    outcome = dataclasses.replace(outcome, rows_in=staged.rows, rows_deduplicated=len(keys.superseded))
    return combined_report(reports, staged.rows), outcome


def check_unique_across_chunks(resolved: ResolvedRun, staged: StagedFiles, keys: BatchKeys) -> None:
    """A Pandera ``unique`` check answered for the whole batch, not chunk by chunk."""
    spec = resolved.asset.spec
    model = spec.validation_model()
    failed = []
    for column in unique_columns(model):
        if (column,) == spec.unique_key:
            repeated, examples = keys.repeated_rows, keys.repeated_examples
        else:
            counts = pc.value_counts(read_column(staged.files, column).drop_null())
            shared = counts.filter(pc.greater(counts.field("counts"), 1))
            repeated = int(pc.sum(shared.field("counts")).as_py() or 0)
            examples = tuple(repr(v) for v in shared.field("values").slice(0, 3).to_pylist())
        if repeated:
            failed.append(FailedCheck(column, "field_uniqueness", failure_count=repeated, failure_cases=examples))
    if failed:
        raise ValidationError(
            asset=spec.name,
            partition=resolved.partition,
            failed_checks=failed,
            failing_rows="(uniqueness is checked across the whole streamed batch; no rows are held to show)",
        )


def combined_report(reports: list[ValidationReport], rows: int) -> ValidationReport:
    """One report for a batch validated a chunk at a time (every chunk passed, or the run failed)."""
    model = reports[0].model if reports else None
    return ValidationReport(model=model, rows=rows, passed=all(r.passed for r in reports))


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


def extract_source(
    resolved: ResolvedRun, refused: list[RefusedRecord] | None = None
) -> tuple[Any, PartitionReplace | None, bool]:
    """Call the asset function and let dlt pull every record.

    Returns the dlt pipeline, the partition to replace when the run replaces its partition, and
    whether the source's keys increased throughout (then no key repeats; see
    :class:`~cascade.records.AscendingKey`).
    Given ``refused``, a record with a value its column cannot hold is appended there and left
    out of the batch instead of failing the run.
    """
    asset = resolved.asset
    kwargs = {"context": resolved.context} if asset.accepts_context else {}
    try:
        with running(resolved.context):
            source = asset.fn(resolved.partition, **kwargs)
            replacing = partition_replace(asset.spec, requested_dispositions(source), resolved.partition)
            guard = RecordGuard(asset.spec.iceberg_schema, asset.spec.unique_key, where=resolved.where, refused=refused)
            source = guard_source(source, guard, column_hints(asset.spec.iceberg_schema))
            pipeline = make_pipeline(resolved.place, dataset=resolved.namespace)
            extract(pipeline, source)
    except CascadeError:
        raise
    except Exception as error:
        raise source_error(error, asset=asset.spec.name, partition=resolved.partition) from error
    return pipeline, replacing, guard.ascending.holds


HONOURED_DISPOSITIONS = ("append", "merge", "replace")


def partition_replace(spec: AssetSpec, dispositions: set[str], partition: str) -> PartitionReplace | None:
    """Whether this run replaces its partition: the asset's ``mode``, or a resource's ``replace``.

    dlt's ``append`` (its default) and ``merge`` both mean Cascade's merge on the unique key; any
    other disposition would be silently ignored, so it is refused.
    """
    unknown = sorted(dispositions - set(HONOURED_DISPOSITIONS))
    if unknown:
        raise AssetDefinitionError(
            spec.name,
            "write_disposition",
            f"{unknown} is not honoured by Cascade (it takes {list(HONOURED_DISPOSITIONS)}: append and merge "
            "upsert on the unique key, replace replaces the partition)",
        )
    if spec.mode != "replace_partition" and "replace" not in dispositions:
        return None
    if spec.partition_column is None:
        raise AssetDefinitionError(spec.name, "write_disposition", f"'replace' is not possible: {REPLACE_NEEDS_A_DAY}")
    return PartitionReplace(spec.partition_column, dt.date.fromisoformat(partition))


def source_error(error: BaseException, *, asset: str, partition: str) -> CascadeError:
    """Turn what a dlt source raised into Cascade's error, transient or terminal, secrets masked."""
    for cause in underlying_errors(error):
        if isinstance(cause, RunError):
            return cause
        if isinstance(cause, SchemaMismatchError):  # a record refused by cascade.records
            return SchemaMismatchError(str(cause))
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


def stage_batch(resolved: ResolvedRun, pipeline: Any) -> StagedFiles:
    """Normalize through dlt to parquet files (their rows are read later, whole or in chunks)."""
    try:
        return stage_files(pipeline)
    except (NestedDataError, MultipleTablesError) as error:
        raise StagingError(str(error), asset=resolved.asset.spec.name, partition=resolved.partition) from None
    except Exception as error:
        raise source_error(error, asset=resolved.asset.spec.name, partition=resolved.partition) from error


def stamped(resolved: ResolvedRun, rows: pa.Table) -> pa.Table:
    """``rows`` with this run's ``_cascade_ingested_at`` (whatever the source sent in its place)."""
    stamp = repeated(pa.scalar(resolved.ingested_at, pa.timestamp("us", tz="UTC")), rows.num_rows)
    return rows.drop_columns([c for c in (INGESTED_AT,) if c in rows.column_names]).append_column(INGESTED_AT, stamp)


STAMP_BLOCK_ROWS = 65_536


def repeated(value: pa.Scalar, rows: int) -> pa.ChunkedArray:
    """``value`` ``rows`` times, as slices of one block: a day's stamp allocates 512 kB, not 8 bytes a row."""
    block = pa.repeat(value, min(rows, STAMP_BLOCK_ROWS))
    whole, rest = divmod(rows, STAMP_BLOCK_ROWS) if rows else (0, 0)
    return pa.chunked_array([block] * whole + ([block.slice(0, rest)] if rest else []), value.type)


def validate(resolved: ResolvedRun, staged: pa.Table) -> tuple[pa.Table, ValidationReport]:
    """Conform to the table schema, then run the Pandera model; raises on any failure."""
    spec = resolved.asset.spec
    rows = conform(staged, spec.table_schema, where=resolved.where, keys=spec.unique_key)
    reject_null_keys(rows, spec.unique_key, where=resolved.where)
    model = spec.validation_model()
    report = validate_batch(rows, model)
    hooks().after_validation(resolved.context, report)
    raise_for_report(report, asset=spec.name, partition=resolved.partition)
    return rows, report


# --- issue 18: the quarantine policy's phase functions (the logic is in cascade.quarantine) -----------


@dataclass(frozen=True)
class Held:
    """The rows a quarantining run keeps out of the table, and its counts over the whole partition."""

    rows: tuple[InvalidRow, ...]
    summary: QuarantineSummary


def validate_quarantining(
    resolved: ResolvedRun, staged: pa.Table, refused: list[RefusedRecord]
) -> tuple[pa.Table, ValidationReport, Held]:
    """Split off the invalid rows, validate the rest, and fail when too much of the partition is invalid."""
    spec = resolved.asset.spec
    rows, invalid = split_batch(staged, spec, where=resolved.where, refused=refused)
    report = validate_batch(rows, spec.validation_model())
    hooks().after_validation(resolved.context, report)
    raise_for_report(report, asset=spec.name, partition=resolved.partition)
    tally = InvalidTally()
    tally.add(rows.num_rows, invalid)
    check_fraction(tally, spec, resolved.partition)
    summary = tally.summary(f"{resolved.namespace}.{resolved.table_name}{spec.quarantine_suffix}")
    if invalid:
        log.warning(
            "rows quarantined",
            asset=spec.name,
            partition=resolved.partition,
            rows_quarantined=summary.rows_quarantined,
            failed_checks=dict(summary.failed_checks),
        )
    return rows, report, Held(tuple(invalid), summary)


def quarantine_attributes(summary: QuarantineSummary) -> dict[str, Any]:
    return {
        "cascade.rows_quarantined": summary.rows_quarantined,
        "cascade.quarantine_table": summary.table,
        "cascade.failed_checks": [check for check, _ in summary.failed_checks],
    }


def commit_quarantine(resolved: ResolvedRun, held: Held) -> None:
    """Replace this partition's quarantined rows with this run's, before the valid rows are merged."""
    spec = resolved.asset.spec
    run = QuarantineRun(spec.name, resolved.partition, resolved.branch, resolved.run_id, resolved.ingested_at)
    identifier = quarantine_identifier(spec, resolved.namespace, resolved.table_name)
    with catalog_errors(resolved):
        write_quarantine(
            open_catalog(resolved.config), identifier, run, held.rows, attempts=resolved.config.commit_attempts
        )


# --- end of issue 18's quarantine functions ------------------------------------------------------------


def merge(
    resolved: ResolvedRun,
    rows: pa.Table | Iterator[pa.Table],
    before_commit: Callable[[MergePlan], None] | None = None,
    replacing: PartitionReplace | None = None,
    chunk_rows: int | None = None,
    keys_distinct: bool | Callable[[], bool] = False,
) -> MergeOutcome:
    """Create the table and branch when missing, evolve it to the asset, then merge in one atomic snapshot.

    ``rows`` is the whole batch, or (with ``chunk_rows``) its chunks, each already checked;
    ``keys_distinct`` vouches that no key appears twice in all of them (see :func:`cascade.merge_into`).
    """
    if isinstance(rows, pa.Table):
        if rows.num_rows == 0 and replacing is None:  # an empty partition commits nothing, whatever the schema says
            return MergeOutcome.nothing()
        if replacing is not None:
            check_rows_in_partition(rows, replacing, resolved.asset.spec.unique_key, resolved.where)
    with catalog_errors(resolved):
        return _merge(resolved, rows, before_commit, replacing, chunk_rows, keys_distinct)


# --- issue 18: write-audit-publish's merge (the logic is in cascade.audit) -----------------------------


def merge_audited(
    resolved: ResolvedRun,
    rows: pa.Table,
    before_commit: Callable[[MergePlan], None] | None = None,
    replacing: PartitionReplace | None = None,
) -> tuple[MergeOutcome, AuditOutcome | None]:
    """Write-audit-publish: merge onto a private audit branch, audit its snapshot, fast-forward the target."""
    if rows.num_rows == 0 and replacing is None:
        return MergeOutcome.nothing(), None
    if replacing is not None:
        check_rows_in_partition(rows, replacing, resolved.asset.spec.unique_key, resolved.where)
    spec = resolved.asset.spec
    with catalog_errors(resolved):
        catalog = open_catalog(resolved.config)
        if replacing is not None and rows.num_rows == 0 and not catalog.table_exists(resolved.identifier):
            return MergeOutcome.nothing(), None
        table: Table = ensure_table(catalog, (resolved.namespace, resolved.table_name), spec)
        table, _ = evolve_table(table, spec, where=resolved.where)

        def merge_onto(current: Table, branch: str) -> MergeOutcome:
            def commit_guard(plan: MergePlan) -> None:
                check_deadline(resolved, "merge")
                if before_commit is not None:
                    before_commit(plan)

            return merge_into(
                current,
                rows,
                spec.unique_key,
                branch=branch,
                snapshot_properties=resolved.snapshot_properties,
                stable_partitions=spec.stable_partitions,
                max_attempts=resolved.config.commit_attempts,
                before_commit=commit_guard,
                replace=replacing,
            )

        hook = partial(hooks().audit, resolved.context)
        return write_audit_publish(
            table,
            resolved.branch,
            audit_branch_name(resolved.run_id),
            merge_onto,
            audit_with(spec.audits, rows, hook),
            audits=tuple(spec.audits),
            asset=spec.name,
            partition=resolved.partition,
        )


# --- end of issue 18's write-audit-publish merge -------------------------------------------------------


def check_table(resolved: ResolvedRun) -> None:
    """Refuse a run whose asset no longer fits its existing table, before the source is called."""
    with catalog_errors(resolved):
        catalog = open_catalog(resolved.config)
        try:
            table = catalog.load_table((resolved.namespace, resolved.table_name))
        except NoSuchTableError:
            return
        check_diff(diff_table(table, resolved.asset.spec), where=resolved.where)


@contextlib.contextmanager
def catalog_errors(resolved: ResolvedRun) -> Iterator[None]:
    """Name the asset and partition in catalog, storage and schema errors; secrets masked."""
    where = f"asset {resolved.asset.spec.name!r}, partition {resolved.partition}"
    try:
        yield
    except SchemaEvolutionError:
        raise
    except SchemaMismatchError as error:
        if str(error).startswith(where):  # a streamed day's chunks are conformed in here, already named
            raise
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


def check_rows_in_partition(rows: pa.Table, replacing: PartitionReplace, keys: tuple[str, ...], where: str) -> None:
    """A replaced partition receives only its own rows: another day's row would be deleted next time."""
    outside = ~replacing.holds(rows.column(replacing.column))
    if outside.any():
        first = int(outside.argmax())
        example = {k: rows.column(k)[first].as_py() for k in keys}
        raise SchemaMismatchError(
            f"{where}: {int(outside.sum())} row(s) have {replacing.column!r} outside {replacing.day} "
            f"(e.g. key {example}, {rows.column(replacing.column)[first].as_py()!r}); "
            "a run that replaces its partition may only hold its rows"
        )


def _merge(
    resolved: ResolvedRun,
    rows: pa.Table | Iterator[pa.Table],
    before_commit: Callable[[MergePlan], None] | None = None,
    replacing: PartitionReplace | None = None,
    chunk_rows: int | None = None,
    keys_distinct: bool | Callable[[], bool] = False,
) -> MergeOutcome:
    spec = resolved.asset.spec
    catalog = open_catalog(resolved.config)
    if (
        replacing is not None
        and isinstance(rows, pa.Table)
        and rows.num_rows == 0
        and not catalog.table_exists(resolved.identifier)
    ):
        return MergeOutcome.nothing()  # nothing to replace, and no table to create for an empty day
    table: Table = ensure_table(catalog, (resolved.namespace, resolved.table_name), spec)
    table, _ = evolve_table(table, spec, where=resolved.where)
    ensure_branch(table, resolved.branch)

    def commit_guard(plan: MergePlan) -> None:
        check_deadline(resolved, "merge")
        if before_commit is not None:
            before_commit(plan)
            check_deadline(resolved, "cascade_before_commit")

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
            replace=replacing,
            chunk_rows=chunk_rows,
            last_check=lambda: check_deadline(resolved, "writing the data files"),
            keys_distinct=keys_distinct,
        )


def report_result(
    resolved: ResolvedRun,
    staged: StagedFiles,
    rows_extracted: int,
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
        rows_extracted=rows_extracted,
        rows_inserted=outcome.rows_inserted,
        rows_updated=outcome.rows_updated,
        rows_unchanged=outcome.rows_unchanged,
        rows_deduplicated=outcome.rows_deduplicated,
        rows_deleted=outcome.rows_deleted,
        snapshot_id=outcome.snapshot_id,
        committed=outcome.committed,
        staged_files=staged.files,
        bytes_staged=staged.bytes_staged,
        validation=report,
        merge=outcome,
        phase_seconds=MappingProxyType(dict(timings)),
    )
