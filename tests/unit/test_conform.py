"""``cascade.conform``: casting a staged batch to the table schema, and refusing data loss."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from cascade.conform import conform, null_safe_equal, reject_null_keys
from cascade.errors import NullKeyError, SchemaMismatchError

SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=True),
    NestedField(2, "n", LongType(), required=False),
    NestedField(3, "at", TimestamptzType(), required=False),
)


def test_casts_orders_and_fills_missing_optional_columns() -> None:
    batch = pa.table({"n": pa.array(["1", "2"]), "id": ["a", "b"]})
    rows = conform(batch, SCHEMA)
    assert rows.column_names == ["id", "n", "at"]
    assert rows.column("n").to_pylist() == [1, 2] and rows.column("at").null_count == 2


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        pytest.param(
            {"id": ["a"], "extra": [1]}, r"asset 'x': column\(s\) \['extra'\] are not in the table", id="extra"
        ),
        pytest.param({"n": [1]}, r"asset 'x': required column 'id' is missing", id="missing-required"),
        pytest.param({"id": [None], "n": [1]}, r"required column 'id' has 1 null", id="null-required"),
        pytest.param({"id": ["a"], "n": ["seven"]}, r"column 'n' cannot be cast from string to int64", id="uncastable"),
    ],
)
def test_refuses_what_would_lose_data_naming_the_column(batch: dict[str, list[object]], message: str) -> None:
    with pytest.raises(SchemaMismatchError, match=message):
        conform(pa.table(batch), SCHEMA, where="asset 'x'")


def test_null_keys_are_refused_naming_the_key() -> None:
    with pytest.raises(NullKeyError, match=r"asset 'x': 1 row\(s\) have a null unique key column 'k'"):
        reject_null_keys(pa.table({"k": ["a", None]}), ("k",), where="asset 'x'")


def test_null_safe_equal_treats_two_nulls_as_equal() -> None:
    left, right = pa.array([1, None, 2, None]), pa.array([1, None, 3, 4])
    assert null_safe_equal(left, right).to_pylist() == [True, True, False, False]
    nested = pa.array([[1], None]), pa.array([[1], [2]])
    assert null_safe_equal(*nested).to_pylist() == [True, False]
