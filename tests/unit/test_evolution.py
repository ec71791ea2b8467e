"""The evolution diff as pure functions: schemas by name, keys, partition specs, and the error text."""

from __future__ import annotations

import pytest
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform
from pyiceberg.types import (
    BinaryType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

from cascade.errors import SchemaEvolutionError, SchemaMismatchError, TerminalError
from cascade.evolution import (
    Allow,
    Change,
    ChangeKind,
    check_diff,
    describe_partition_spec,
    diff_keys,
    diff_schemas,
    shape,
    widens,
)


def columns(*fields: tuple[int, str, IcebergType, bool]) -> Schema:
    return Schema(*(NestedField(i, name, kind, required=required) for i, name, kind, required in fields))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(IntegerType(), LongType(), True, id="int-long"),
        pytest.param(FloatType(), DoubleType(), True, id="float-double"),
        pytest.param(DecimalType(9, 2), DecimalType(18, 2), True, id="decimal-precision"),
        pytest.param(LongType(), IntegerType(), False, id="long-int"),
        pytest.param(DecimalType(9, 2), DecimalType(18, 3), False, id="decimal-scale"),
        pytest.param(DecimalType(18, 2), DecimalType(9, 2), False, id="decimal-narrower"),
        pytest.param(StringType(), BinaryType(), False, id="string-binary"),
        pytest.param(IntegerType(), DoubleType(), False, id="int-double"),
    ],
)
def test_widens_only_as_the_iceberg_spec_allows(old: IcebergType, new: IcebergType, expected: bool) -> None:
    assert widens(old, new) is expected


def test_columns_match_by_name_not_by_id() -> None:
    table = columns((1, "a", LongType(), False), (2, "b", StringType(), False), (3, "c", IntegerType(), True))
    asset = columns(
        (9, "c", LongType(), False),  # same name, other id: widened and made optional
        (8, "a", LongType(), False),  # same name, other id: unchanged
        (7, "d", StringType(), False),  # new
        (6, "e", StringType(), True),  # new and required
    )
    assert diff_schemas(table, asset) == (
        Change(ChangeKind.WIDEN_TYPE, "c", "int", "long"),
        Change(ChangeKind.MAKE_OPTIONAL, "c", "required", "optional"),
        Change(ChangeKind.ADD_COLUMN, "d", None, "string"),
        Change(ChangeKind.ADD_REQUIRED_COLUMN, "e", None, "string"),
        Change(ChangeKind.REMOVE_COLUMN, "b", "string", None),
    )


def test_a_rename_is_not_guessed() -> None:
    table = columns((1, "id", StringType(), False), (2, "amount", LongType(), False))
    asset = columns((1, "id", StringType(), False), (2, "total", LongType(), False))
    assert [(c.kind, c.subject) for c in diff_schemas(table, asset)] == [
        (ChangeKind.ADD_COLUMN, "total"),
        (ChangeKind.REMOVE_COLUMN, "amount"),
    ]


def test_nested_types_compare_without_their_field_ids() -> None:
    point = StructType(NestedField(10, "x", DoubleType(), required=False))
    renumbered = StructType(NestedField(99, "x", DoubleType(), required=False))
    assert shape(point) == shape(renumbered) == "struct<x: double?>"
    table = columns((1, "p", point, False), (2, "l", ListType(3, LongType(), element_required=False), False))
    same = columns((5, "p", renumbered, False), (6, "l", ListType(7, LongType(), element_required=False), False))
    assert diff_schemas(table, same) == ()
    other = columns(
        (5, "p", StructType(NestedField(99, "x", StringType(), required=False)), False),
        (6, "l", ListType(7, LongType(), element_required=False), False),
    )
    assert [c.kind for c in diff_schemas(table, other)] == [ChangeKind.CHANGE_TYPE]


def test_keys_are_judged_only_when_the_table_records_one() -> None:
    assert diff_keys(None, ("id",)) == ()
    assert diff_keys(("id",), ("id",)) == ()
    assert diff_keys(("id",), ("id", "day")) == (
        Change(ChangeKind.UNIQUE_KEY, "unique_key", "('id',)", "('id', 'day')"),
    )


def test_partition_specs_are_described_by_column_names() -> None:
    schema = columns((1, "station", StringType(), False), (2, "ts", TimestamptzType(), False))
    spec = PartitionSpec(
        PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="ts_day"),
        PartitionField(source_id=1, field_id=1001, transform=BucketTransform(4), name="station_b"),
    )
    assert describe_partition_spec(spec, schema) == "day(ts), bucket[4](station)"
    assert describe_partition_spec(UNPARTITIONED_PARTITION_SPEC, schema) == "unpartitioned"
    by_station = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=IdentityTransform(), name="s"))
    assert describe_partition_spec(by_station, schema) == "identity(station)"


def test_the_error_names_every_refused_change_with_its_remedy() -> None:
    from cascade.evolution import TableDiff

    changes = (
        Change(ChangeKind.ADD_COLUMN, "note", None, "string"),
        Change(ChangeKind.REMOVE_COLUMN, "s", "string", None),
        Change(ChangeKind.PARTITION_SPEC, "partition_spec", "unpartitioned", "identity(n)"),
    )
    diff = TableDiff("items", "shop.items", (), (), ("id",), ("id",), "unpartitioned", "identity(n)", changes)
    check_diff(diff, where="w", allow=[Allow.DROP_COLUMN, Allow.PARTITION_SPEC])  # everything breaking is allowed
    with pytest.raises(SchemaEvolutionError) as caught:
        check_diff(diff, where="asset 'items', table shop.items", allow=[Allow.PARTITION_SPEC])
    error = caught.value
    assert isinstance(error, SchemaMismatchError) and isinstance(error, TerminalError) and not error.transient
    assert str(error).splitlines() == [
        "asset 'items', table shop.items: the asset no longer fits its table; nothing was committed:",
        "  - column 's' (string) removed from iceberg_schema: put it back in iceberg_schema (optional), "
        "or drop it from the table: cascade schema apply items --allow drop-column",
    ]
