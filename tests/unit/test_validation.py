"""``cascade.validation``: Pandera reports that name the failing columns and rows."""

from __future__ import annotations

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
