"""Conform a batch to an Iceberg table's schema: cast, fill, and refuse what would change data.

A cast is allowed only when every value survives it unchanged: widening integers, integers into
doubles (within 2^53), timestamp units, decimals to a wider scale, strings into the temporal
types they spell. A boolean in a double column, a number in a string column, a timestamp in a
string column, a float in an integer column: each is refused naming the column.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema, index_by_name
from pyiceberg.types import DoubleType, FloatType, UUIDType

from cascade.errors import NullKeyError, SchemaMismatchError

EXAMPLE_ROWS = 3  # offending rows named in an error
FLOATING_KEYS = (
    "a unique key cannot be a float or double column (Iceberg refuses them as identifier fields, and "
    "equal floats differ in their bits: 0.0 and -0.0); use an integer, decimal or string column"
)
UNSUPPORTED_UUID = (
    "Cascade cannot store Iceberg uuid columns yet: Arrow's compute functions, which merging needs "
    "(equality, sorting, grouping), do not take the uuid type; declare them StringType() to keep the "
    "text, or FixedType(16) for the 16 bytes"
)
OFFENDER_SLICE = 4096


def arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema Cascade writes for an Iceberg schema (no field-id metadata)."""
    return schema_to_pyarrow(schema, include_field_ids=False)


def conform(batch: pa.Table, schema: Schema, *, where: str = "batch", keys: tuple[str, ...] = ()) -> pa.Table:
    """Cast ``batch`` to ``schema``'s columns and order.

    Missing optional columns become nulls; a column the schema lacks, a column whose values
    would change in the cast, or a null in a required column raises :class:`SchemaMismatchError`
    naming the column (and, where it can, the keys of offending rows). An empty batch is empty
    whatever the schema requires.
    """
    target = arrow_schema(schema)
    if batch.num_rows == 0:
        return target.empty_table()
    extra = [name for name in batch.column_names if target.get_field_index(name) < 0]
    for name in extra:
        refuse_variant(batch, name, target, where=where, keys=keys)
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
            declared = str(schema.find_field(field.name).field_type)
            column = cast_exactly(column, field, declared, where=where, batch=batch, keys=keys)
        if not field.nullable and column.null_count:
            nulls = pc.indices_nonzero(pc.is_null(column).combine_chunks())[:EXAMPLE_ROWS].to_pylist()
            raise SchemaMismatchError(
                f"{where}: required column {field.name!r} has {column.null_count} null value(s)"
                f"{_at_rows(nulls, batch, keys)}"
            )
        refuse_outside_calendar(column, field.name, where=where, batch=batch, keys=keys)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)


def refuse_outside_calendar(
    column: pa.ChunkedArray, name: str, *, where: str, batch: pa.Table, keys: tuple[str, ...]
) -> None:
    """Refuse dates and timestamps outside the years 1 to 9999: Arrow holds them (a year 0 parsed
    from text), but Python's dates cannot, and so neither can pyiceberg's file statistics or readers."""
    kind = column.type
    if pa.types.is_date32(kind):
        low, high = pa.scalar(dt.date.min, kind), pa.scalar(dt.date.max, kind)
    elif pa.types.is_timestamp(kind):
        zone = dt.UTC if kind.tz else None
        low, high = (pa.scalar(t.replace(tzinfo=zone), kind) for t in (dt.datetime.min, dt.datetime.max))
    else:
        return
    least, greatest = pc.min_max(column).values()
    if not least.is_valid or not (pc.less(least, low).as_py() or pc.greater(greatest, high).as_py()):
        return  # compared in Arrow: such a value has no Python form
    outside = pc.fill_null(pc.or_(pc.less(column, low), pc.greater(column, high)), False)
    rows = pc.indices_nonzero(outside.combine_chunks())[:EXAMPLE_ROWS].to_pylist()
    examples = ", ".join(str(column[row].cast(pa.string())) for row in rows)
    raise SchemaMismatchError(
        f"{where}: column {name!r} holds {examples}, outside the years 1 to 9999 that Iceberg's readers "
        f"and Python can hold{_at_rows(rows, batch, keys)}"
    )


def exact_cast_allowed(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a cast from ``source`` to ``target`` can keep every value (checked values aside)."""
    if source == target or pa.types.is_null(source):
        return True
    return _kind(target) in EXACT_CASTS.get(_kind(source), frozenset())


def _kind(data_type: pa.DataType) -> str:
    for kind, test in KINDS:
        if test(data_type):
            return kind
    return str(data_type)


KINDS: tuple[tuple[str, Callable[[pa.DataType], bool]], ...] = (
    ("integer", pa.types.is_integer),
    ("floating", pa.types.is_floating),
    ("string", lambda t: bool(pa.types.is_string(t) or pa.types.is_large_string(t))),
    ("binary", lambda t: bool(pa.types.is_binary(t) or pa.types.is_large_binary(t))),
    ("binary", pa.types.is_fixed_size_binary),
    ("timestamp", pa.types.is_timestamp),
    ("date", pa.types.is_date),
    ("time", pa.types.is_time),
    ("decimal", pa.types.is_decimal),
    ("nested", pa.types.is_nested),
)
EXACT_CASTS: dict[str, frozenset[str]] = {
    "integer": frozenset({"integer", "floating", "decimal"}),  # range and exactness checked by the safe cast
    "floating": frozenset({"floating"}),
    # strings into the temporal types they spell; nested values arrive from dlt as JSON text
    "string": frozenset({"string", "timestamp", "date", "time", "nested"}),
    "binary": frozenset({"binary"}),
    "timestamp": frozenset({"timestamp"}),
    "date": frozenset({"date"}),
    "time": frozenset({"time"}),
    "decimal": frozenset({"decimal"}),
    "nested": frozenset({"nested"}),
}


def cast_exactly(
    column: pa.ChunkedArray,
    field: pa.Field,
    declared: str,
    *,
    where: str,
    batch: pa.Table,
    keys: tuple[str, ...] = (),
) -> pa.ChunkedArray:
    """Cast ``column`` to ``field``'s type (the Iceberg type ``declared``), refusing any value the cast would change."""
    source, target = column.type, field.type
    if not exact_cast_allowed(source, target):
        raise SchemaMismatchError(
            f"{where}: column {field.name!r} holds {source} values, which a {declared} column cannot store unchanged; "
            "convert them in the source or change the column's type in iceberg_schema"
        )
    if pa.types.is_nested(target) and (pa.types.is_string(source) or pa.types.is_large_string(source)):
        return _parse_json(column, field, declared, where)
    try:
        return safe_cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        offenders = _offenders(column, target, batch, keys)
        message = f"{where}: column {field.name!r} cannot be stored as {declared}: {error}{offenders}"
        raise SchemaMismatchError(message) from None


def _offenders(column: pa.ChunkedArray, target: pa.DataType, batch: pa.Table, keys: tuple[str, ...]) -> str:
    """Where the first values that fail the cast are: their row positions and keys."""
    return _at_rows(uncastable_positions(column, target, limit=EXAMPLE_ROWS), batch, keys)


DLT_VARIANT = re.compile(r"^(?P<column>.+)__v_[a-z0-9_]+$")


def refuse_variant(batch: pa.Table, name: str, target: pa.Schema, *, where: str, keys: tuple[str, ...]) -> None:
    """Name the values behind a dlt variant column (``at__v_text``): values of a declared column that
    dlt could not coerce to its type, staged aside instead of failing."""
    match = DLT_VARIANT.match(name)
    if match is None or target.get_field_index(match.group("column")) < 0:
        return
    values = batch.column(name)
    rows = pc.indices_nonzero(pc.is_valid(values).combine_chunks())[:EXAMPLE_ROWS].to_pylist()
    examples = ", ".join(repr(values[row].as_py()) for row in rows)
    raise SchemaMismatchError(
        f"{where}: column {match.group('column')!r}: dlt could not convert {examples} to the column's type "
        f"(it staged them aside as {name!r}){_at_rows(rows, batch, keys)}"
    )


def _at_rows(positions: list[int], batch: pa.Table, keys: tuple[str, ...]) -> str:
    """`` (at row 3 (key {...}), ...)`` for an error message; empty for no positions."""
    if not positions:
        return ""
    named = [f"row {p}" + (f" (key {_key_at(batch, keys, p)})" if keys else "") for p in positions]
    return f" (at {', '.join(named)})"


def uncastable_positions(
    column: pa.ChunkedArray | pa.Array, target: pa.DataType, limit: int | None = None
) -> list[int]:
    """Positions of the values :func:`safe_cast` to ``target`` refuses (the first ``limit``)."""
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if _casts(values, target):
        return []
    bad: list[int] = []
    for start in range(0, len(values), OFFENDER_SLICE):  # slices first, then rows within a failing slice
        if limit is not None and len(bad) >= limit:
            break
        if _casts(values.slice(start, OFFENDER_SLICE), target):
            continue
        stop = min(start + OFFENDER_SLICE, len(values))
        bad.extend(p for p in range(start, stop) if not _casts(values.slice(p, 1), target))
    return bad[:limit] if limit is not None else bad


def safe_cast(values: pa.ChunkedArray | pa.Array, target: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """Arrow's safe cast, and into a 32-bit float no finite value may become infinite, none but
    zero may become zero, and an integer must stay itself (a float column rounds a double's
    digits, as declaring it asks, but never its magnitude)."""
    cast = values.cast(target, safe=True)
    if pa.types.is_float32(target) and len(values) and _narrowed(values, cast):
        raise pa.ArrowInvalid("a value does not fit a 32-bit float: it would become infinite, zero or another integer")
    return cast


def _narrowed(values: pa.ChunkedArray | pa.Array, cast: pa.ChunkedArray | pa.Array) -> bool:
    if pa.types.is_integer(values.type):
        changed = pc.not_equal(pc.cast(cast, values.type, safe=False), values)
    else:
        before, after = pc.cast(values, pa.float64()), pc.cast(cast, pa.float64())
        overflow = pc.and_(pc.is_finite(before), pc.invert(pc.is_finite(after)))
        underflow = pc.and_(pc.not_equal(before, 0), pc.equal(after, 0))
        changed = pc.or_(overflow, underflow)
    return bool(pc.any(pc.fill_null(changed, False)).as_py())


def _casts(values: pa.Array, target: pa.DataType) -> bool:
    try:
        safe_cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _key_at(batch: pa.Table, keys: tuple[str, ...], position: int) -> dict[str, Any]:
    return {k: batch.column(k)[position].as_py() for k in keys if k in batch.column_names}


def _parse_json(column: pa.ChunkedArray, field: pa.Field, declared: str, where: str) -> pa.ChunkedArray:
    try:
        values = [None if text is None else json.loads(text) for text in column.to_pylist()]
        return pa.chunked_array([pa.array(values, type=field.type)], type=field.type)
    except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise SchemaMismatchError(f"{where}: column {field.name!r} cannot be stored as {declared}: {error}") from None


def uuid_columns(schema: Schema) -> list[str]:
    """The columns, nested ones too, declared uuid (see :data:`UNSUPPORTED_UUID`)."""
    return sorted(
        name for name, field_id in index_by_name(schema).items() if isinstance(schema.find_type(field_id), UUIDType)
    )


def floating_keys(schema: Schema, keys: tuple[str, ...]) -> list[str]:
    """The unique-key columns that are floats or doubles (see :data:`FLOATING_KEYS`)."""
    return [k for k in keys if isinstance(schema.find_field(k).field_type, FloatType | DoubleType)]


def reject_floating_keys(schema: Schema, keys: tuple[str, ...], *, where: str = "batch") -> None:
    """Raise :class:`SchemaMismatchError` when a unique-key column is a float or double."""
    floating = floating_keys(schema, keys)
    if floating:
        raise SchemaMismatchError(f"{where}: column(s) {floating}: {FLOATING_KEYS}")


def reject_null_keys(batch: pa.Table, keys: tuple[str, ...], *, where: str = "batch") -> None:
    """Raise :class:`NullKeyError` when any row has a null (or NaN) in a unique-key column."""
    for key in keys:
        column = batch.column(key)
        if column.null_count:
            raise NullKeyError(f"{where}: {column.null_count} row(s) have a null unique key column {key!r}")
        if pa.types.is_floating(column.type):
            nans = pc.sum(pc.is_nan(column)).as_py() or 0
            if nans:
                raise NullKeyError(f"{where}: {nans} row(s) have a NaN in the unique key column {key!r}")


def null_safe_equal(left: pa.ChunkedArray | pa.Array, right: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Element-wise "the same value": null == null and NaN == NaN are True (a stored value equals
    itself), and floats compare by their bits otherwise, so -0.0 is not 0.0 (a change to keep)."""
    floating = pa.types.is_floating(left.type) and left.type == right.type
    try:
        equal = _same_bits(left, right) if floating else pc.equal(left, right)
    except pa.ArrowNotImplementedError:  # nested types: compare as Python values
        same = [_same(a, b) for a, b in zip(left.to_pylist(), right.to_pylist(), strict=True)]
        return pa.chunked_array([pa.array(same, pa.bool_())], pa.bool_())
    same = pc.and_(pc.is_null(left), pc.is_null(right))
    if pa.types.is_floating(left.type) and pa.types.is_floating(right.type):
        same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(left), pc.is_nan(right)), False))
    return pc.or_(pc.fill_null(equal, False), same)


_BITS = {16: pa.int16(), 32: pa.int32(), 64: pa.int64()}


def _same_bits(left: pa.ChunkedArray | pa.Array, right: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Floats equal when their bit patterns are (null where either is null)."""
    bits = _BITS[left.type.bit_width]

    def view(values: pa.ChunkedArray | pa.Array) -> pa.Array:
        combined = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        return combined.view(bits)

    return pc.equal(view(left), view(right))


def _same(left: Any, right: Any) -> bool:
    """Python-value equality with NaN equal to NaN and -0.0 not 0.0, inside lists and structs too."""
    if isinstance(left, float) and isinstance(right, float):
        if left != left and right != right:
            return True
        return left == right and math.copysign(1.0, left) == math.copysign(1.0, right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return bool(left == right)
