"""Validate a conformed batch with the asset's Pandera model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from cascade.errors import FailedCheck, ValidationError

FAILING_ROWS_SHOWN = 5
FAILURE_CASES_SHOWN = 3


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one batch."""

    model: str | None
    rows: int
    passed: bool
    failed_checks: tuple[FailedCheck, ...] = ()
    failing_rows: str = ""

    @property
    def skipped(self) -> bool:
        return self.model is None


def validate_batch(rows: pa.Table, model: Any | None) -> ValidationReport:
    """Run ``model`` (a pandera ``DataFrameModel``) over ``rows``; never raises for bad data."""
    if model is None:
        return ValidationReport(model=None, rows=rows.num_rows, passed=True)
    from pandera.errors import SchemaError, SchemaErrors

    frame = rows.to_pandas(types_mapper=None)
    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        checks = []
        for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
            examples = tuple(repr(v) for v in group["failure_case"].head(FAILURE_CASES_SHOWN).tolist())
            checks.append(
                FailedCheck(
                    column=None if column != column else str(column),  # NaN for dataframe-wide checks
                    check=str(check),
                    failure_count=len(group),
                    failure_cases=examples,
                )
            )
        index = [i for i in cases["index"].dropna().unique().tolist() if i in frame.index][:FAILING_ROWS_SHOWN]
        failing = frame.loc[index].to_string() if index else "(no row-level failures)"
        return ValidationReport(model.__name__, rows.num_rows, False, tuple(checks), failing)
    except SchemaError as error:  # raised even when lazy, e.g. for a missing column
        check = FailedCheck(
            column=None, check=str(error).splitlines()[0], failure_count=rows.num_rows, failure_cases=()
        )
        return ValidationReport(model.__name__, rows.num_rows, False, (check,), "")
    return ValidationReport(model=model.__name__, rows=rows.num_rows, passed=True)


def raise_for_report(report: ValidationReport, *, asset: str, partition: str) -> None:
    if not report.passed:
        raise ValidationError(
            asset=asset, partition=partition, failed_checks=report.failed_checks, failing_rows=report.failing_rows
        )
