"""The ``on_invalid="quarantine"`` policy: bad rows go aside, good rows are merged.

A batch is split into the rows that may be merged and the rows that may not, each with the
checks and columns it failed: records the source sent with a value its column cannot hold
(collected by :class:`cascade.records.RecordGuard`), rows of Arrow sources whose values cannot
be cast exactly, and rows that fail a row-level Pandera check. The invalid rows are written to
the quarantine table ``<namespace>.<table><suffix>`` before the valid ones are merged; the
write replaces the quarantined rows of the same asset, partition and branch, so a re-run (or a
run after a crash between the two commits) holds exactly the invalid rows of the latest run.

The functions take a conformed (or staged) ``pa.Table`` and return plain values, so a run that
streams its partition chunk by chunk can call them per chunk: the fraction of invalid rows is
kept in a :class:`InvalidTally` (counters, not tables) over the whole partition.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, EqualTo
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import NestedField, StringType, TimestamptzType

from cascade.conformance import (
    EXAMPLE_ROWS,
    arrow_schema,
    conform,
    exact_cast_allowed,
    reject_null_keys,
    uncastable_positions,
)
from cascade.errors import RunError, TerminalError
from cascade.records import RefusedRecord, as_json
from cascade.spec import INGESTED_AT, AssetSpec
from cascade.validation import reconcile_dtypes

CONVERSION_CHECK = "type"
"""The check named for a value its column cannot hold (a failed conversion, not a Pandera check)."""

QUARANTINE_SCHEMA = Schema(
    NestedField(1, "asset", StringType(), required=True),
    NestedField(2, "partition", StringType(), required=True),
    NestedField(3, "branch", StringType(), required=True),
    NestedField(4, "run_id", StringType(), required=True),
    NestedField(5, "row_key", StringType(), required=True, doc="the row's unique key as JSON"),
    NestedField(6, INGESTED_AT, TimestamptzType(), required=True),
    NestedField(7, "checks", StringType(), required=True, doc="JSON list of the failed checks"),
    NestedField(8, "columns", StringType(), required=True, doc="JSON list of the failing columns"),
    NestedField(9, "record", StringType(), required=True, doc="the row as the source sent it, as JSON"),
    NestedField(10, "detail", StringType(), required=False, doc="why a value could not be converted"),
    NestedField(11, "first_seen", TimestamptzType(), required=False, doc="when a run first quarantined this key"),
)
QUARANTINE_COLUMNS = tuple(f.name for f in QUARANTINE_SCHEMA.fields)


class TooManyInvalidRowsError(RunError, TerminalError):
    """Under ``on_invalid="quarantine"``, more of the partition was invalid than the asset allows.

    ``rows_invalid``, ``rows_seen`` and ``failed_checks`` (each failed check and its count) are
    the counts of the message, for adapters that report them as values.
    """

    def __init__(
        self,
        message: str,
        *,
        asset: str,
        partition: str,
        rows_invalid: int = 0,
        rows_seen: int = 0,
        failed_checks: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.rows_invalid = rows_invalid
        self.rows_seen = rows_seen
        self.failed_checks = failed_checks
        super().__init__(message, asset=asset, partition=partition)


@dataclass(frozen=True)
class InvalidRow:
    """One row kept out of the table: its key, the record as JSON, and what it failed."""

    key: str
    record: str
    checks: tuple[str, ...]
    columns: tuple[str, ...]
    detail: str = ""


@dataclass
class InvalidTally:
    """Counters over a whole partition (every chunk), for the invalid fraction and the report."""

    rows_seen: int = 0
    rows_invalid: int = 0
    checks: Counter[str] = field(default_factory=Counter)

    def add(self, rows_valid: int, invalid: Sequence[InvalidRow]) -> None:
        self.rows_seen += rows_valid + len(invalid)
        self.rows_invalid += len(invalid)
        self.checks.update(check for row in invalid for check in row.checks)

    @property
    def fraction(self) -> float:
        return self.rows_invalid / self.rows_seen if self.rows_seen else 0.0

    def summary(self, table: str) -> QuarantineSummary:
        return QuarantineSummary(table, self.rows_invalid, self.rows_seen, tuple(sorted(self.checks.items())))


@dataclass(frozen=True)
class QuarantineSummary:
    """What a run quarantined: the table, how many rows of how many, and each failed check's count."""

    table: str
    rows_quarantined: int
    rows_seen: int
    failed_checks: tuple[tuple[str, int], ...] = ()

    @property
    def fraction(self) -> float:
        return self.rows_quarantined / self.rows_seen if self.rows_seen else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "rows_quarantined": self.rows_quarantined,
            "rows_seen": self.rows_seen,
            "failed_checks": dict(self.failed_checks),
        }


# --- splitting a batch ----------------------------------------------------------------------------


def refused_rows(refused: Iterable[RefusedRecord]) -> list[InvalidRow]:
    """The records the guard kept out of the batch, as quarantined rows."""
    return [
        InvalidRow(r.key, r.record, (f"{r.column}: {CONVERSION_CHECK}",), (r.column,), f"{r.column}: {r.reason}")
        for r in refused
    ]


def split_unconvertible(batch: pa.Table, schema: Schema, keys: tuple[str, ...]) -> tuple[pa.Table, list[InvalidRow]]:
    """Take out the rows whose values cannot be cast exactly to ``schema`` (Arrow and pandas sources).

    A column whose type can never be cast is left for :func:`cascade.conformance.conform` to refuse:
    that is a schema mistake, not a bad row.
    """
    target = arrow_schema(schema)
    problems: dict[int, list[tuple[str, str]]] = {}
    for column_field in target:
        if column_field.name not in batch.column_names:
            continue
        column = batch.column(column_field.name)
        if not column_field.nullable and column.null_count:
            for position in _null_positions(column):
                problems.setdefault(position, []).append((column_field.name, "null in a required column"))
        if column.type == column_field.type or not exact_cast_allowed(column.type, column_field.type):
            continue
        if pa.types.is_nested(column_field.type):
            continue  # JSON text from dlt: conform parses it and names the column
        for position in uncastable_positions(column, column_field.type):
            declared = str(schema.find_field(column_field.name).field_type)
            value = column[position].as_py()
            problems.setdefault(position, []).append((column_field.name, f"{value!r} cannot be stored as {declared}"))
    if not problems:
        return batch, []
    invalid = [_invalid_row(batch, position, keys, reasons) for position, reasons in sorted(problems.items())]
    keep = pa.array([p not in problems for p in range(batch.num_rows)], pa.bool_())
    return batch.filter(keep), invalid


def _null_positions(column: pa.ChunkedArray) -> list[int]:
    return [p for p, valid in enumerate(column.is_valid().to_pylist()) if not valid]


def _invalid_row(batch: pa.Table, position: int, keys: tuple[str, ...], reasons: list[tuple[str, str]]) -> InvalidRow:
    row = batch.slice(position, 1).to_pylist()[0]
    record = {k: v for k, v in row.items() if k != INGESTED_AT}
    key = {k: record.get(k) for k in keys}
    return InvalidRow(
        key=as_json(key),
        record=as_json(record),
        checks=tuple(dict.fromkeys(f"{column}: {CONVERSION_CHECK}" for column, _ in reasons)),
        columns=tuple(dict.fromkeys(column for column, _ in reasons)),
        detail="; ".join(f"{column}: {reason}" for column, reason in reasons),
    )


def split_failing(rows: pa.Table, model: Any | None, keys: tuple[str, ...]) -> tuple[pa.Table, list[InvalidRow]]:
    """Take out the rows that fail a row-level check of the Pandera ``model``.

    A check Pandera cannot tie to rows (a dataframe-wide check, a column's dtype) stays in the
    batch, so validating the valid rows still fails the run on it.
    """
    if model is None or rows.num_rows == 0:
        return rows, []
    from pandera.errors import SchemaError, SchemaErrors

    frame = reconcile_dtypes(rows.to_pandas(types_mapper=None), model)
    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
    except SchemaError:  # raised even when lazy, e.g. for a missing column: no row is to blame
        return rows, []
    else:
        return rows, []
    failed: dict[int, list[tuple[str, str]]] = {}
    for column, check, index in cases[["column", "check", "index"]].itertuples(index=False):
        if index is None or index != index or not isinstance(index, (int, float)):
            continue
        named = "" if column != column or column is None else str(column)
        failed.setdefault(int(index), []).append((named, str(check)))
    if not failed:
        return rows, []
    invalid = []
    for position, checks in sorted(failed.items()):
        row = rows.slice(position, 1).to_pylist()[0]
        record = {k: v for k, v in row.items() if k != INGESTED_AT}
        invalid.append(
            InvalidRow(
                key=as_json({k: record.get(k) for k in keys}),
                record=as_json(record),
                checks=tuple(dict.fromkeys(f"{column}: {check}" if column else check for column, check in checks)),
                columns=tuple(dict.fromkeys(column for column, _ in checks if column)),
            )
        )
    keep = pa.array([p not in failed for p in range(rows.num_rows)], pa.bool_())
    return rows.filter(keep), invalid


def split_batch(
    staged: pa.Table, spec: AssetSpec, *, where: str, refused: Iterable[RefusedRecord] = ()
) -> tuple[pa.Table, list[InvalidRow]]:
    """Conform ``staged`` and split it into the rows to merge and the rows to quarantine.

    The rows to merge still have to pass :func:`cascade.validation.validate_batch` (a check
    that no row is to blame fails the run), and the invalid fraction is the caller's to check.
    """
    batch, unconvertible = split_unconvertible(staged, spec.table_schema, spec.unique_key)
    rows = conform(batch, spec.table_schema, where=where, keys=spec.unique_key)
    reject_null_keys(rows, spec.unique_key, where=where)
    model = spec.validation_model()
    rows, failing = split_failing(rows, model, spec.unique_key)
    return rows, [*refused_rows(refused), *unconvertible, *failing]


def check_fraction(tally: InvalidTally, spec: AssetSpec, partition: str) -> None:
    """Fail the run, before anything is committed, when too much of the partition is invalid."""
    if tally.rows_invalid and tally.fraction > spec.max_invalid_fraction:
        top = ", ".join(f"{check} ({count})" for check, count in tally.checks.most_common(EXAMPLE_ROWS))
        raise TooManyInvalidRowsError(
            f"{tally.rows_invalid} of {tally.rows_seen} row(s) are invalid ({tally.fraction:.2%}), above "
            f"max_invalid_fraction={spec.max_invalid_fraction:g}; nothing was committed (failed checks: {top})",
            asset=spec.name,
            partition=partition,
            rows_invalid=tally.rows_invalid,
            rows_seen=tally.rows_seen,
            failed_checks=tuple(sorted(tally.checks.items())),
        )


# --- the quarantine table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantineRun:
    """Which quarantined rows a run owns: its asset, partition and branch (the latest run's rows)."""

    asset: str
    partition: str
    branch: str
    run_id: str
    ingested_at: dt.datetime

    @property
    def selection(self) -> BooleanExpression:
        return And(And(_equal("asset", self.asset), _equal("partition", self.partition)), _equal("branch", self.branch))


def _equal(column: str, value: str) -> BooleanExpression:
    # pyiceberg's EqualTo takes a column name at run time, but its pydantic signature says otherwise (0.12-0.10x)
    return EqualTo(column, value)  # type: ignore[call-arg, arg-type]


def quarantine_identifier(spec: AssetSpec, namespace: str, table_name: str) -> tuple[str, str]:
    return namespace, f"{table_name}{spec.quarantine_suffix}"


def open_quarantine(catalog: Catalog, identifier: tuple[str, str], *, create: bool) -> Table | None:
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        if not create:
            return None
    catalog.create_namespace_if_not_exists(identifier[0])
    return catalog.create_table_if_not_exists(identifier, QUARANTINE_SCHEMA)


def quarantine_rows(
    run: QuarantineRun, invalid: Sequence[InvalidRow], first_seen: Mapping[str, dt.datetime] | None = None
) -> pa.Table:
    """The quarantine table's rows for ``invalid``; ``first_seen`` keeps the time a key was first kept."""
    seen = first_seen or {}
    columns: dict[str, list[Any]] = {
        "asset": [run.asset] * len(invalid),
        "partition": [run.partition] * len(invalid),
        "branch": [run.branch] * len(invalid),
        "run_id": [run.run_id] * len(invalid),
        "row_key": [r.key for r in invalid],
        INGESTED_AT: [run.ingested_at] * len(invalid),
        "checks": [json.dumps(list(r.checks), ensure_ascii=False) for r in invalid],
        "columns": [json.dumps(list(r.columns), ensure_ascii=False) for r in invalid],
        "record": [r.record for r in invalid],
        "detail": [r.detail or None for r in invalid],
        "first_seen": [seen.get(r.key, run.ingested_at) for r in invalid],
    }
    return pa.Table.from_pydict(columns, schema=arrow_schema(QUARANTINE_SCHEMA))


def write_quarantine(
    catalog: Catalog,
    identifier: tuple[str, str],
    run: QuarantineRun,
    invalid: Sequence[InvalidRow],
    *,
    attempts: int = 20,
) -> int | None:
    """Replace the quarantined rows of ``run``'s asset, partition and branch with ``invalid``, in one commit.

    Returns the quarantine table's new snapshot id, or ``None`` when nothing had to change.
    """
    table = open_quarantine(catalog, identifier, create=bool(invalid))
    if table is None:
        return None
    for attempt in range(attempts):
        previous = (
            table.scan(row_filter=run.selection, selected_fields=("row_key", "first_seen")).to_arrow().to_pylist()
        )
        held = len(previous)
        rows = quarantine_rows(run, invalid, {r["row_key"]: r["first_seen"] for r in previous if r["first_seen"]})
        if not held and not invalid:
            return None
        try:
            with table.transaction() as transaction:
                properties = {"cascade.run-id": run.run_id, "cascade.partition": run.partition}
                if held:
                    transaction.delete(run.selection, snapshot_properties=properties)
                if invalid:
                    transaction.append(rows, snapshot_properties=properties)
        except CommitFailedException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
            table = table.refresh()
            continue
        snapshot = table.refresh().current_snapshot()
        return snapshot.snapshot_id if snapshot else None
    return None


def read_quarantine(
    catalog: Catalog, identifier: tuple[str, str], *, partition: str | None = None, branch: str | None = None
) -> pa.Table:
    """The quarantined rows, optionally of one partition and branch; empty when there is no table."""
    table = open_quarantine(catalog, identifier, create=False)
    if table is None or table.current_snapshot() is None:
        return arrow_schema(QUARANTINE_SCHEMA).empty_table()
    selection: BooleanExpression | None = None
    for column, value in (("partition", partition), ("branch", branch)):
        if value is not None:
            condition = _equal(column, value)
            selection = condition if selection is None else And(selection, condition)
    if selection is None:
        return table.scan().to_arrow()
    return table.scan(row_filter=selection).to_arrow()


def drop_quarantined(
    catalog: Catalog,
    identifier: tuple[str, str],
    *,
    asset: str,
    partition: str | None = None,
    branch: str | None = None,
) -> int:
    """Delete quarantined rows of ``asset`` (one partition and branch, when given); returns how many."""
    table = open_quarantine(catalog, identifier, create=False)
    if table is None or table.current_snapshot() is None:
        return 0
    selection: BooleanExpression = _equal("asset", asset)
    for column, value in (("partition", partition), ("branch", branch)):
        if value is not None:
            selection = And(selection, _equal(column, value))
    held = table.scan(row_filter=selection, selected_fields=("run_id",)).to_arrow().num_rows
    if held:
        table.delete(selection, snapshot_properties={"cascade.operation": "drop-quarantined"})
    return int(held)
