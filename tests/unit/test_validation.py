"""``cascade.validation``: Pandera reports that name the failing columns and rows."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pandera.pandas as pa_
import pyarrow as pa
import pytest

from cascade.errors import ValidationError
from cascade.validation import raise_for_report, validate_batch


class Reading(pa_.DataFrameModel):
    id: str = pa_.Field(nullable=False)
    sgv: int = pa_.Field(ge=20, le=600)

    class Config:
        coerce = True


def test_passing_batch_and_skipped_model() -> None:
    rows = pa.table({"id": ["a", "b"], "sgv": [100, 200]})
    assert validate_batch(rows, Reading).passed
    skipped = validate_batch(rows, None)
    assert skipped.passed and skipped.skipped and skipped.rows == 2


def test_failures_name_check_column_and_examples() -> None:
    report = validate_batch(pa.table({"id": ["a", "b", "c"], "sgv": [5, 100, 900]}), Reading)
    assert not report.passed
    checks = {(c.column, c.check): c for c in report.failed_checks}
    assert checks[("sgv", "greater_than_or_equal_to(20)")].failure_cases == ("5",)
    assert checks[("sgv", "less_than_or_equal_to(600)")].failure_count == 1
    assert "900" in report.failing_rows
    with pytest.raises(ValidationError, match=r"asset 'g', partition 2024-01-01: 2 validation check\(s\) failed"):
        raise_for_report(report, asset="g", partition="2024-01-01")


def test_missing_column_is_a_failure_not_a_crash() -> None:
    report = validate_batch(pa.table({"id": ["a"]}), Reading)
    [check] = report.failed_checks
    assert not report.passed and (check.check, check.failure_cases) == ("column_in_dataframe", ("'sgv'",))


# --- declarations as users write them validate what Cascade stages ------------------------------------


class Copied(pa_.DataFrameModel):
    """The design notes' model, copied as written: a naive ``datetime`` for a timestamptz column."""

    id: str = pa_.Field(nullable=False, unique=True)
    created_at: dt.datetime = pa_.Field(nullable=False)
    count: int = pa_.Field(nullable=False)
    maybe: pd.Int64Dtype = pa_.Field(nullable=True)


def staged(**overrides: pa.Array) -> pa.Table:
    columns = {
        "id": pa.array(["a", "b"]),
        "created_at": pa.array(
            [dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC), dt.datetime(2024, 1, 2, tzinfo=dt.UTC)],
            pa.timestamp("us", tz="UTC"),
        ),
        "count": pa.array([1, 2], pa.int64()),
        "maybe": pa.array([None, 3], pa.int64()),
    }
    return pa.table({**columns, **overrides})


def test_the_copied_example_validates_without_coerce() -> None:
    rows = staged()
    report = validate_batch(rows, Copied)
    assert report.passed, report.failed_checks
    assert rows.column("created_at").type == pa.timestamp("us", tz="UTC")  # what is stored is untouched


def test_reconciled_columns_are_still_checked() -> None:
    class Later(Copied):
        created_at: dt.datetime = pa_.Field(nullable=False, ge=pd.Timestamp("2024-01-02"))

    report = validate_batch(staged(), Later)
    [check] = report.failed_checks
    assert (check.column, check.failure_count) == ("created_at", 1)


@pytest.mark.parametrize(
    ("column", "values", "fits"),
    [
        pytest.param("count", pa.array([1.5, 2.0]), "declare it as float", id="fractional-in-int"),
        pytest.param("count", pa.array([None, 2], pa.int64()), "pd.Int64Dtype (a nullable integer", id="null-in-int"),
        pytest.param("id", pa.array([1, 2]), "declare it as int", id="int-for-str"),
    ],
)
def test_a_remaining_mismatch_names_the_declaration_that_fits(column: str, values: pa.Array, fits: str) -> None:
    report = validate_batch(staged(**{column: values}), Copied)
    [check] = [c for c in report.failed_checks if c.check.startswith("dtype(")]
    assert check.column == column and fits in check.check
