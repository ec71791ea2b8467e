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

    frame = reconcile_dtypes(rows.to_pandas(types_mapper=None), model)
    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        checks = []
        for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
            examples = tuple(repr(v) for v in group["failure_case"].head(FAILURE_CASES_SHOWN).tolist())
            named = None if column != column else str(column)  # NaN for dataframe-wide checks
            checks.append(
                FailedCheck(
                    column=named,
                    check=str(check) + dtype_hint(str(check), frame, named),
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


def unique_columns(model: Any | None) -> list[str]:
    """The columns a Pandera model declares ``unique=True``."""
    if model is None:
        return []
    return [name for name, column in model.to_schema().columns.items() if column.unique]


def raise_for_report(report: ValidationReport, *, asset: str, partition: str) -> None:
    if not report.passed:
        raise ValidationError(
            asset=asset, partition=partition, failed_checks=report.failed_checks, failing_rows=report.failing_rows
        )


def reconcile_dtypes(frame: Any, model: Any) -> Any:
    """Make lossless dtype differences between the batch and the model's declarations vanish.

    For validation only (the stored batch is untouched): a naive ``datetime`` field checks a
    ``TimestamptzType`` column as UTC instants, timestamp units follow the model, and integer
    columns that pandas turned into floats (because of nulls) or nullable integers are given the
    integer dtype the model declares when no value changes. A model with ``coerce`` is left to
    Pandera. What cannot be reconciled without changing a value stays as it is, for Pandera to report.
    """
    import numpy as np
    import pandas as pd

    schema = model.to_schema()
    if schema.coerce:
        return frame
    frame = frame.copy(deep=False)
    for name, column in schema.columns.items():
        if name not in frame.columns or column.coerce or column.dtype is None:
            continue
        wanted, have = getattr(column.dtype, "type", None), frame[name].dtype
        if wanted is None or wanted == have:
            continue
        values = frame[name]
        try:
            if isinstance(have, pd.DatetimeTZDtype) and isinstance(wanted, np.dtype) and wanted.kind == "M":
                frame[name] = values.dt.tz_convert("UTC").dt.tz_localize(None).astype(wanted)
            elif isinstance(wanted, pd.DatetimeTZDtype) and isinstance(have, pd.DatetimeTZDtype):
                frame[name] = values.dt.tz_convert(wanted.tz).astype(wanted)
            else:
                other_unit = isinstance(wanted, np.dtype) and wanted.kind == "M" and getattr(have, "kind", "") == "M"
                whole = _is_integer(wanted) and _is_numeric(have) and _integral(values, nullable=_nullable(wanted))
                if other_unit or whole:
                    frame[name] = values.astype(wanted)
        except (TypeError, ValueError, OverflowError):
            continue  # not lossless: Pandera reports the dtype
    return frame


def _is_integer(dtype: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_integer_dtype(dtype))


def _is_numeric(dtype: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(dtype)) and not pd.api.types.is_bool_dtype(dtype)


def _nullable(dtype: Any) -> bool:
    import pandas as pd

    return isinstance(dtype, pd.api.extensions.ExtensionDtype)


def _integral(values: Any, *, nullable: bool) -> bool:
    """Whether every value is a whole number (and, unless the target is nullable, none missing)."""
    present = values.dropna()
    if not nullable and len(present) != len(values):
        return False
    return bool(((present % 1) == 0).all())


def dtype_hint(check: str, frame: Any, column: str | None) -> str:
    """For a failed dtype check, the declaration that fits the batch's column."""
    if not check.startswith("dtype(") or column is None or column not in frame.columns:
        return ""
    have = frame[column].dtype
    nulls_made_float = getattr(have, "kind", "") == "f" and bool(frame[column].isna().any())
    if "int" in check.lower() and nulls_made_float:  # pandas turns an integer column with nulls into floats
        fits = "pd.Int64Dtype (a nullable integer: the column has nulls)"
    else:
        fits = declaration_for(have)
    return f" (the batch's column is {have}; declare it as {fits})"


def declaration_for(dtype: Any) -> str:
    """The Pandera field type that matches a pandas dtype, as a user would write it."""
    import pandas as pd

    if isinstance(dtype, pd.DatetimeTZDtype):
        return f'pd.DatetimeTZDtype("{dtype.unit}", "{dtype.tz}"), or datetime with coerce = True'
    kind = getattr(dtype, "kind", "")
    simple = {"M": "datetime", "f": "float", "i": "int", "u": "int", "b": "bool", "O": "str", "U": "str"}
    if pd.api.types.is_string_dtype(dtype):
        return "str"
    return simple.get(kind, str(dtype))
