"""Conform a batch to an Iceberg table's schema: cast, fill, and refuse what would lose data."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema

from cascade.errors import NullKeyError, SchemaMismatchError


def arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema Cascade writes for an Iceberg schema (no field-id metadata)."""
    return schema_to_pyarrow(schema, include_field_ids=False)


def conform(batch: pa.Table, schema: Schema, *, where: str = "batch") -> pa.Table:
    """Cast ``batch`` to ``schema``'s columns and order.

    Missing optional columns become nulls; a column the schema lacks, a column that cannot be
    cast, or a null in a required column raises :class:`SchemaMismatchError` naming the column.
    """
    target = arrow_schema(schema)
    extra = [name for name in batch.column_names if target.get_field_index(name) < 0]
    if extra:
        raise SchemaMismatchError(
            f"{where}: column(s) {extra} are not in the table schema (columns: {target.names}); "
            "drop or rename them in the source, or add them to iceberg_schema"
        )
    columns = []
    for field in target:
        if field.name not in batch.column_names:
            if not field.nullable:
                raise SchemaMismatchError(f"{where}: required column {field.name!r} is missing")
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(field.name)
        if column.type != field.type:
            column = _cast(column, field, where)
        if not field.nullable and column.null_count:
            raise SchemaMismatchError(f"{where}: required column {field.name!r} has {column.null_count} null value(s)")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)


def _cast(column: pa.ChunkedArray, field: pa.Field, where: str) -> pa.ChunkedArray:
    try:
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise SchemaMismatchError(
            f"{where}: column {field.name!r} cannot be cast from {column.type} to {field.type}: {error}"
        ) from None


def reject_null_keys(batch: pa.Table, keys: tuple[str, ...], *, where: str = "batch") -> None:
    """Raise :class:`NullKeyError` when any row has a null in a unique-key column."""
    for key in keys:
        nulls = batch.column(key).null_count
        if nulls:
            raise NullKeyError(f"{where}: {nulls} row(s) have a null unique key column {key!r}")


def null_safe_equal(left: pa.ChunkedArray | pa.Array, right: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Element-wise equality where null == null is True."""
    try:
        equal = pc.equal(left, right)
    except pa.ArrowNotImplementedError:  # nested types: compare as Python values
        return pa.array([a == b for a, b in zip(left.to_pylist(), right.to_pylist(), strict=True)], pa.bool_())
    both_null = pc.and_(pc.is_null(left), pc.is_null(right))
    return pc.or_(pc.fill_null(equal, False), both_null)
