"""``cascade.conformance``: casting a staged batch to the table schema, and refusing data loss."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, FloatType, IntegerType, LongType, NestedField, StringType, TimestamptzType

from cascade.conformance import conform, null_safe_equal, reject_null_keys
from cascade.errors import NullKeyError, SchemaMismatchError

SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=True),
    NestedField(2, "n", LongType(), required=False),
    NestedField(3, "at", TimestamptzType(), required=False),
)


def test_casts_orders_and_fills_missing_optional_columns() -> None:
    batch = pa.table({"n": pa.array([1, 2], pa.int32()), "id": ["a", "b"]})
    rows = conform(batch, SCHEMA)
    assert rows.column_names == ["id", "n", "at"]
    assert rows.column("n").to_pylist() == [1, 2] and rows.column("at").null_count == 2


def test_an_empty_batch_conforms_whatever_the_schema_requires() -> None:
    rows = conform(pa.table({}), SCHEMA)
    assert rows.num_rows == 0 and rows.column_names == ["id", "n", "at"]


WIDE = Schema(
    NestedField(1, "id", StringType(), required=True),
    NestedField(2, "d", DoubleType(), required=False),
    NestedField(3, "i", IntegerType(), required=False),
    NestedField(4, "s", StringType(), required=False),
    NestedField(5, "at", TimestamptzType(), required=False),
    NestedField(6, "f", FloatType(), required=False),
)


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        pytest.param("d", pa.array([True]), "holds bool values, which a double column", id="bool-in-double"),
        pytest.param("i", pa.array(["7"]), "holds string values, which a int column", id="string-in-int"),
        pytest.param("i", pa.array([1.5]), "holds double values, which a int column", id="float-in-int"),
        pytest.param("s", pa.array([7]), "holds int64 values, which a string column", id="int-in-string"),
        pytest.param(
            "s",
            pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)]),
            "holds timestamp.*values, which a string column",
            id="timestamp-in-string",
        ),
        pytest.param(
            "i",
            pa.array([2**40]),
            r"column 'i' cannot be stored as int.*at row 0 \(key \{'id': 'k'\}\)",
            id="overflow",
        ),
        pytest.param("d", pa.array([2**53 + 1]), r"column 'd' cannot be stored as double", id="inexact-double"),
        pytest.param("f", pa.array([1e300]), r"column 'f' cannot be stored as float.*at row 0", id="float-overflow"),
        pytest.param("f", pa.array([1e-50]), r"column 'f' cannot be stored as float.*at row 0", id="float-underflow"),
        pytest.param("f", pa.array([2**24 + 1]), r"column 'f' cannot be stored as float", id="inexact-float"),
    ],
)
def test_refuses_a_cast_that_would_change_values(column: str, values: pa.Array, message: str) -> None:
    batch = pa.table({"id": ["k"], column: values})
    with pytest.raises(SchemaMismatchError, match=message):
        conform(batch, WIDE, where="asset 'x'", keys=("id",))


def test_a_float_column_rounds_a_doubles_digits_but_keeps_its_magnitude() -> None:
    values = [0.1, -0.0, float("inf"), float("nan"), None, 2.0**24, 3.4e38]
    rows = conform(pa.table({"id": ["k"] * len(values), "f": pa.array(values)}), WIDE)
    assert rows.column("f").to_pylist()[:3] == [pa.scalar(0.1, pa.float32()).as_py(), -0.0, float("inf")]
    assert math.isnan(rows.column("f")[3].as_py()) and rows.column("f").to_pylist()[4:] == [
        None,
        2.0**24,
        pa.scalar(3.4e38, pa.float32()).as_py(),
    ]


def test_lossless_casts_keep_every_value() -> None:
    at = "2024-01-01T10:00:00+05:00"
    batch = pa.table({"id": ["k"], "d": pa.array([2**53]), "i": pa.array([-(2**31)]), "at": pa.array([at])})
    rows = conform(batch, WIDE)
    assert rows.column("d").to_pylist() == [float(2**53)] and rows.column("i").to_pylist() == [-(2**31)]
    assert rows.column("at").to_pylist() == [dt.datetime.fromisoformat(at)]


def test_nan_keys_are_refused_as_nan() -> None:
    with pytest.raises(NullKeyError, match=r"1 row\(s\) have a NaN in the unique key column 'k'"):
        reject_null_keys(pa.table({"k": [1.0, float("nan")]}), ("k",))


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        pytest.param(
            {"id": ["a"], "extra": [1]}, r"asset 'x': column\(s\) \['extra'\] are not in the table", id="extra"
        ),
        pytest.param({"n": [1]}, r"asset 'x': required column 'id' is missing", id="missing-required"),
        pytest.param({"id": [None], "n": [1]}, r"required column 'id' has 1 null", id="null-required"),
        pytest.param({"id": ["a"], "n": ["7"]}, r"column 'n' holds string values, which a long", id="uncastable"),
    ],
)
def test_refuses_what_would_lose_data_naming_the_column(batch: dict[str, list[object]], message: str) -> None:
    with pytest.raises(SchemaMismatchError, match=message):
        conform(pa.table(batch), SCHEMA, where="asset 'x'")


def test_nulls_in_a_required_column_are_refused_naming_their_rows_and_keys() -> None:
    schema = Schema(NestedField(1, "id", StringType(), required=False), NestedField(2, "n", LongType(), required=True))
    batch = pa.chunked_array([[1, None], [3, None, None, None]])  # more than are named, across chunks
    rows = pa.table({"id": list("abcdef"), "n": batch})
    with pytest.raises(SchemaMismatchError) as refused:
        conform(rows, schema, where="asset 'x'", keys=("id",))
    assert str(refused.value) == (
        "asset 'x': required column 'n' has 4 null value(s) "
        "(at row 1 (key {'id': 'b'}), row 3 (key {'id': 'd'}), row 4 (key {'id': 'e'}))"
    )


def test_null_keys_are_refused_naming_the_key() -> None:
    with pytest.raises(NullKeyError, match=r"asset 'x': 1 row\(s\) have a null unique key column 'k'"):
        reject_null_keys(pa.table({"k": ["a", None]}), ("k",), where="asset 'x'")


def test_null_safe_equal_treats_two_nulls_as_equal() -> None:
    left, right = pa.array([1, None, 2, None]), pa.array([1, None, 3, 4])
    assert null_safe_equal(left, right).to_pylist() == [True, True, False, False]
    nested = pa.array([[1], None]), pa.array([[1], [2]])
    assert null_safe_equal(*nested).to_pylist() == [True, False]


def test_null_safe_equal_treats_nan_as_equal_to_itself() -> None:
    nan = float("nan")
    assert null_safe_equal(pa.array([nan, nan, 1.0, None]), pa.array([nan, 1.0, nan, nan])).to_pylist() == [
        True,
        False,
        False,
        False,
    ]
    assert null_safe_equal(pa.array([[nan]]), pa.array([[nan]])).to_pylist() == [True]


def test_null_safe_equal_tells_negative_zero_from_zero() -> None:
    """0.0 == -0.0 for arithmetic, but a value changed from one to the other is a change to store."""
    left, right = pa.array([0.0, -0.0, 1.5, None], pa.float64()), pa.array([-0.0, -0.0, 1.5, 0.0], pa.float64())
    assert null_safe_equal(left, right).to_pylist() == [False, True, True, False]
    chunked = pa.chunked_array([[0.0], [2.0]], pa.float32()), pa.chunked_array([[-0.0, 2.0]], pa.float32())
    assert null_safe_equal(*chunked).to_pylist() == [False, True]
    assert null_safe_equal(pa.array([[0.0]]), pa.array([[-0.0]])).to_pylist() == [False]
