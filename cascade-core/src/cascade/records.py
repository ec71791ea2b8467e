"""What Cascade does to each record on its way from the source into dlt.

Three things dlt would otherwise decide for us, each of which changed values:

* **order**: dlt may write a batch as several files and reads them back in no set order, so
  every record is numbered as the source yields it (``_cascade_seq``) and the staged batch is
  put back in that order: "the last record wins" means the last one the source yielded. An
  Arrow item's rows all carry the number of its first row (see :class:`SourcePositions`);
* **types**: dlt infers a column's type from the first values it sees (an ISO-8601 string
  becomes a timestamp) and coerces later values to it (``True`` becomes ``1.0``). Cascade hands
  dlt the Iceberg schema's types as column hints, and refuses a value that its column cannot
  hold unchanged, naming the column, the record's position and its key;
* **non-finite floats**: dlt's extract files are JSON, which has no NaN or infinity, so dlt
  stores them as null. They travel beside the record (``_cascade_nonfinite``) and are put back
  after staging.

Arrow tables and pandas frames pass through dlt untouched, so they are only numbered; their
types are checked when the batch is conformed (:mod:`cascade.conformance`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import numbers
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FixedType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    PrimitiveType,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
)

from cascade.conformance import cast_exactly, exact_cast_allowed, safe_cast, uncastable_positions
from cascade.errors import SchemaMismatchError
from cascade.naming import normalized_name

SEQUENCE = "_cascade_seq"
NONFINITE = "_cascade_nonfinite"
TRANSPORT_COLUMNS = (SEQUENCE, NONFINITE)

EXACT_FLOAT_INTEGER = 2**53  # integers beyond this change value when stored as a double
INTEGER_RANGE: dict[type[IcebergType], tuple[int, int]] = {
    IntegerType: (-(2**31), 2**31 - 1),
    LongType: (-(2**63), 2**63 - 1),
}

Check = Callable[[Any], str | None]
"""Returns why a (non-null) value cannot be stored unchanged in its column, or ``None`` if it can."""


def column_hints(schema: Schema) -> dict[str, dict[str, Any]]:
    """dlt column hints that make dlt stage each declared column with its Iceberg type.

    Without them dlt infers types from values and reinterprets strings that look like dates.
    """
    return {field.name: _dlt_column(field.field_type) for field in schema.fields}


def _dlt_column(field_type: IcebergType) -> dict[str, Any]:
    match field_type:
        case StringType():
            return {"data_type": "text"}
        case IntegerType():
            return {"data_type": "bigint", "precision": 32}
        case LongType():
            return {"data_type": "bigint"}
        case FloatType() | DoubleType():
            return {"data_type": "double"}
        case BooleanType():
            return {"data_type": "bool"}
        case TimestamptzType():
            return {"data_type": "timestamp", "timezone": True, "precision": 6}
        case TimestampType():
            return {"data_type": "timestamp", "timezone": False, "precision": 6}
        case DateType():
            return {"data_type": "date"}
        case TimeType():
            return {"data_type": "time", "precision": 6}
        case DecimalType():
            return {"data_type": "decimal", "precision": field_type.precision, "scale": field_type.scale}
        case BinaryType() | FixedType():
            return {"data_type": "binary"}
        case _:  # struct, list, map: kept whole as JSON by dlt, parsed back into the nested type
            return {"data_type": "json"}


def value_check(field_type: IcebergType) -> Check:
    """The check a source value must pass to be stored unchanged in a column of ``field_type``."""
    match field_type:
        case StringType():
            return _only(str, "a string")
        case IntegerType() | LongType():
            low, high = INTEGER_RANGE[type(field_type)]
            return lambda v: _integer(v, low, high)
        case FloatType() | DoubleType():
            return _floating
        case BooleanType():
            return _boolean
        case TimestamptzType():
            return _timestamp
        case TimestampType():
            return lambda v: _timestamp(v, zoned=False)
        case DateType():
            return _date
        case TimeType():
            return _time
        case DecimalType():
            return lambda v: _decimal(v, field_type.precision, field_type.scale)
        case BinaryType() | FixedType():
            return _only((bytes, bytearray), "bytes")
        case StructType():
            names = {f.name for f in field_type.fields}
            return lambda v: _struct(v, names)
        case ListType():
            return _only((list, tuple), "a list")
        case MapType():
            return _only(Mapping, "a mapping")
        case _:
            return lambda v: None


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _only(types: type | tuple[type, ...], wanted: str) -> Check:
    def check(value: Any) -> str | None:
        return None if isinstance(value, types) else f"{_describe(value)} is not {wanted}"

    return check


def _integer(value: Any, low: int, high: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"{_describe(value)} is not an integer"
    if not low <= int(value) <= high:
        return f"{value} is out of the column's range [{low}, {high}]"
    return None


def _floating(value: Any) -> str | None:
    if isinstance(value, float):  # numpy's float64 is one too
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{_describe(value)} is not a number"
    if isinstance(value, numbers.Integral) and abs(int(value)) > EXACT_FLOAT_INTEGER:
        return f"the integer {value} cannot be stored exactly as a double"
    return None


def _boolean(value: Any) -> str | None:
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool_ is no bool
        return None
    return f"{_describe(value)} is not a boolean"


def _timestamp(value: Any, zoned: bool = True) -> str | None:
    """``zoned``: the column keeps instants (``timestamptz``); else it keeps times without an offset."""
    if isinstance(value, dt.datetime):
        if getattr(value, "nanosecond", 0):  # a pandas Timestamp
            return f"{_describe(value)} has nanoseconds; the column keeps microseconds"
        offset = value.utcoffset()
    elif isinstance(value, str):
        parsed, problem = _read_iso(value, dt.datetime.fromisoformat, "timestamp")
        if problem is not None:
            return problem
        offset = parsed.utcoffset()
    else:
        return f"{_describe(value)} is not a timestamp or an ISO-8601 string"
    return None if zoned else _shifting_offset(value, offset)


def _time(value: Any) -> str | None:
    if isinstance(value, dt.time):
        offset = value.utcoffset()
    elif isinstance(value, str):
        parsed, problem = _read_iso(value, dt.time.fromisoformat, "time")
        if problem is not None:
            return problem
        offset = parsed.utcoffset()
    else:
        return f"{_describe(value)} is not a time or an ISO-8601 time string"
    return _shifting_offset(value, offset)


def _read_iso(text: str, parse: Callable[[str], Any], what: str) -> tuple[Any, str | None]:
    """``text`` as ``parse`` reads it, or why it cannot be stored unchanged."""
    try:
        parsed = parse(text)
    except ValueError:
        return None, f"the string {text!r} is not an ISO-8601 {what}"
    if _beyond_microseconds(text):
        return None, f"the string {text!r} has fractional seconds beyond microseconds; the column keeps microseconds"
    return parsed, None


FRACTION = re.compile(r"[.,](\d{7,})")


def _beyond_microseconds(text: str) -> bool:
    """Whether ISO text gives a second's fraction past the sixth digit (Python's parser drops it)."""
    if "." not in text and "," not in text:  # most timestamps: no fraction to read
        return False
    return any(digits[6:].strip("0") for digits in FRACTION.findall(text))


def _shifting_offset(value: Any, offset: dt.timedelta | None) -> str | None:
    """Why a value with a UTC offset cannot go to a column without one: storing it would shift it."""
    if not offset:
        return None
    sign, magnitude = ("-", -offset) if offset < dt.timedelta(0) else ("+", offset)
    hours, rest = divmod(int(magnitude.total_seconds()), 3600)
    spelled = f"{sign}{hours:02d}:{rest // 60:02d}" + (f":{rest % 60:02d}" if rest % 60 else "")
    return (
        f"{_describe(value)} has the UTC offset {spelled}, which a column without a time zone cannot keep "
        "(its time would shift); send it without an offset, or declare a timestamptz column"
    )


def _date(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return f"{_describe(value)} is a timestamp, not a date"
    if isinstance(value, dt.date):
        return None
    if isinstance(value, str):
        return _read_iso(value, dt.date.fromisoformat, "date")[1]
    return f"{_describe(value)} is not a date"


def _decimal(value: Any, precision: int, scale: int) -> str | None:
    if isinstance(value, bool):
        return f"{_describe(value)} is not a decimal"
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{value} is not a finite decimal"
        value = decimal.Decimal(repr(value))
    elif isinstance(value, numbers.Integral):
        value = decimal.Decimal(int(value))
    if not isinstance(value, decimal.Decimal) or not value.is_finite():
        return f"{_describe(value)} is not a decimal"
    exponent = int(value.as_tuple().exponent)
    if -exponent > scale and value != value.quantize(decimal.Decimal(1).scaleb(-scale)):
        return f"{value} has more than {scale} decimal places"
    if value.adjusted() + 1 > precision - scale:
        return f"{value} has more than {precision - scale} digits before the point"
    return None


def _struct(value: Any, names: set[str]) -> str | None:
    if not isinstance(value, Mapping):
        return f"{_describe(value)} is not an object"
    unknown = [k for k in value if k not in names]
    return f"fields {unknown} are not in the struct's fields {sorted(names)}" if unknown else None


FAST_TYPES: dict[type[IcebergType], frozenset[type]] = {
    StringType: frozenset({str}),
    BooleanType: frozenset({bool}),
    FloatType: frozenset({float}),
    DoubleType: frozenset({float}),
    TimestamptzType: frozenset({dt.datetime}),
    DateType: frozenset({dt.date}),
}
"""Value types a column takes as they are, checked by ``type(value) in ...`` before any slower check."""


class _Column:
    """How one source field is checked: its column, the types taken as they are, the full check."""

    __slots__ = ("check", "fast", "is_float", "name", "range")

    def __init__(self, name: str, field_type: IcebergType) -> None:
        self.name = name
        self.fast = FAST_TYPES.get(type(field_type), frozenset())
        self.range = INTEGER_RANGE.get(type(field_type))
        self.is_float = isinstance(field_type, (FloatType, DoubleType))
        self.check = value_check(field_type)


REFUSED = object()
"""What a collecting guard maps a refused record to; :func:`guard_source` filters it out."""


@dataclass(frozen=True)
class RefusedRecord:
    """A source record a collecting guard kept out of the batch: as the source sent it, and why."""

    record: str  # the record as JSON, every source field
    key: str  # the record's unique key as JSON, by column name
    column: str
    reason: str


class AscendingKey:
    """Whether a single-column key strictly increases across every Arrow item the source yields.

    Then no key repeats in the batch, and a day too large to merge whole need not have its keys
    read back and sorted to know it (sequential and time-ordered ids arrive this way). Records,
    a composite key, a null key or a key that does not increase leave the answer ``False``.
    """

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.key = keys[0] if len(keys) == 1 else None
        self.holds = self.key is not None
        self.last: pa.Scalar | None = None  # the previous item's last key

    def see(self, table: pa.Table | pa.RecordBatch) -> None:
        if self.holds:
            try:
                self.holds = self._still_ascending(table)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):  # keys that do not compare
                self.holds = False

    def _still_ascending(self, table: pa.Table | pa.RecordBatch) -> bool:
        names = [name for name in table.column_names if normalized_name(name) == self.key]
        if len(names) != 1:
            return False
        column = table.column(names[0])
        if column.null_count:
            return False
        if len(column) == 0:
            return True
        if self.last is not None and not pc.greater(column[0], self.last).as_py():
            return False
        if len(column) > 1 and not pc.all(pc.greater(column.slice(1), column.slice(0, len(column) - 1))).as_py():
            return False
        self.last = column[len(column) - 1]
        return True


def staged_types(schema: Schema) -> dict[str, pa.DataType | None]:
    """The Arrow type dlt stages each column as, given :func:`column_hints` (``None``: nested).

    dlt fills a column a page lacks with this type, so a page cast to it concatenates with the
    others; :func:`cascade.conformance.conform` then casts to the table's own (``large_string``
    for ``string``, ``float`` for ``float``) after staging.
    """
    from dlt.common.destination.capabilities import DestinationCapabilitiesContext
    from dlt.common.libs.pyarrow import get_py_arrow_datatype

    caps = DestinationCapabilitiesContext.generic_capabilities("parquet")
    hints = column_hints(schema)
    return {
        field.name: get_py_arrow_datatype(hints[field.name], caps, "UTC")  # type: ignore[arg-type]
        if isinstance(field.field_type, PrimitiveType)
        else None
        for field in schema.fields
    }


class RecordGuard:
    """A dlt map step: number each record, check its values, carry non-finite floats beside it.

    By default a value its column cannot hold raises :class:`SchemaMismatchError`. Given a
    ``refused`` list, the guard instead appends a :class:`RefusedRecord` to it and drops the
    record from the batch (the ``on_invalid="quarantine"`` policy).
    """

    def __init__(
        self, schema: Schema, keys: tuple[str, ...], where: str, refused: list[RefusedRecord] | None = None
    ) -> None:
        self.where = where
        self.refused = refused
        self.keys = keys
        self.columns = {f.name: _Column(f.name, f.field_type) for f in schema.fields}
        self.staged_types = staged_types(schema)
        self.declared = {f.name: str(f.field_type) for f in schema.fields}
        self.fields: dict[str, _Column | None] = {}  # source field -> its column (dlt's normalized name)
        self.position = 0
        self.ascending = AscendingKey(keys)

    def __call__(self, item: Any) -> Any:
        if isinstance(item, Mapping):
            self.ascending.holds = False
            return self._record(item)
        if isinstance(item, (pa.Table, pa.RecordBatch)):
            return self._numbered(item)
        if type(item).__name__ == "DataFrame" and hasattr(item, "to_records"):  # pandas
            return self._numbered(pa.Table.from_pandas(item, preserve_index=False))
        return item

    def _numbered(self, table: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
        # One number for the whole item: a column of distinct numbers made dlt's parquet writer try
        # and abandon a dictionary for every file (0.7 s of a 10M-row day), a constant one costs nothing.
        table = self._as_declared(table)
        positions = pa.array(np.full(table.num_rows, self.position, dtype=np.int64))
        self.position += table.num_rows
        self.ascending.see(table)
        if SEQUENCE in table.column_names:
            table = table.drop_columns([SEQUENCE])
        return table.append_column(SEQUENCE, positions)

    def _as_declared(self, table: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
        """The item with each declared column cast to its table type where the cast keeps every value.

        Then the staged keys are the values the table will hold (ISO strings spelling one instant
        with two offsets are one key, not two), and pages that differ only in a widening type
        (int32, then int64) stage as one schema. A value its column cannot hold is refused here,
        naming the column and rows, or quarantined (see :meth:`_without_uncastable`); a type that
        can never be cast is left for conforming to refuse, and its keys vouch for nothing.
        """
        for index, name in enumerate(table.column_names):
            column = self._column(name)
            if column is None or (target := self.staged_types[column.name]) is None:
                continue  # JSON text for a nested column is parsed when conforming
            source = table.schema.field(index).type
            if pa.types.is_dictionary(source):  # decoding loses nothing
                table = table.set_column(
                    index, pa.field(name, source.value_type), table.column(index).cast(source.value_type)
                )
                source = source.value_type
            if source != target and exact_cast_allowed(source, target):
                try:
                    cast = safe_cast(table.column(index), target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    whole = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
                    table = self._without_uncastable(whole, index, column)
                    cast = safe_cast(table.column(index), target)
                table = table.set_column(index, pa.field(name, target), cast)
            if column.name in self.keys and table.schema.field(index).type != target:
                self.ascending.holds = False  # a type conforming refuses: the run fails there anyway
        return table

    def _without_uncastable(self, table: pa.Table, index: int, column: _Column) -> pa.Table:
        """Refuse the rows whose value in ``table``'s column ``index`` its column cannot hold.

        Raises :class:`SchemaMismatchError` naming the column and the rows, or, when collecting
        (quarantine), appends each row to ``refused`` and returns the table without them: every
        page then stages with the same types, whichever pages held a bad value.
        """
        target, declared = self.staged_types[column.name], self.declared[column.name]
        assert target is not None
        if self.refused is None:
            cast_exactly(
                table.column(index),
                pa.field(column.name, target),
                declared,
                where=self.where,
                batch=table,
                keys=self.keys,
            )
        assert self.refused is not None  # cast_exactly raised for the rows the cast refused
        bad = uncastable_positions(table.column(index), target)
        for position in bad:
            row = table.slice(position, 1).to_pylist()[0]
            problem = f"{table.column(index)[position].as_py()!r} cannot be stored as {declared}"
            self.refused.append(self._refusal(row, column.name, problem))
        refused = set(bad)
        return table.filter(pa.array([p not in refused for p in range(table.num_rows)], pa.bool_()))

    def _column(self, field: str) -> _Column | None:
        if field not in self.fields:
            self.fields[field] = self.columns.get(normalized_name(field))  # None: conforming names it
        return self.fields[field]

    def _refusal(self, item: Mapping[str, Any], column: str, problem: str) -> RefusedRecord:
        by_column = {(c.name if (c := self._column(k)) else k): v for k, v in item.items()}
        key = {k: by_column.get(k) for k in self.keys}
        return RefusedRecord(as_json(dict(item)), as_json(key), column, problem)

    def _record(self, item: Mapping[str, Any]) -> Any:
        row = dict(item)
        nonfinite: dict[str, str] | None = None
        for field, value in item.items():
            if value is None:
                continue
            column = self.fields[field] if field in self.fields else self._column(field)
            if column is None:
                continue
            kind = type(value)
            if kind in column.fast:
                if not column.is_float or math.isfinite(value):
                    continue
            elif kind is int and column.range is not None and column.range[0] <= value <= column.range[1]:
                continue
            else:
                problem = column.check(value)
                if problem is not None and self.refused is not None:
                    self.refused.append(self._refusal(item, column.name, problem))
                    return REFUSED
                if problem is not None:
                    raise SchemaMismatchError(
                        f"{self.where}: column {column.name!r}, {self._record_name(item)}: {problem}"
                    )
                if not column.is_float or math.isfinite(value):
                    continue
            nonfinite = nonfinite or {}
            nonfinite[column.name] = repr(float(value))
            row[field] = None
        row[SEQUENCE] = self.position
        if nonfinite:
            row[NONFINITE] = json.dumps(nonfinite)
        self.position += 1
        return row

    def _record_name(self, item: Mapping[str, Any]) -> str:
        by_column = {(c.name if (c := self._column(k)) else k): v for k, v in item.items()}
        key = {k: by_column.get(k) for k in self.keys}
        return f"record {self.position} (key {key})"


def guard_source(source: Any, guard: RecordGuard, hints: dict[str, dict[str, Any]]) -> Any:
    """Add the guard and the column hints to every selected resource of a dlt source or resource."""
    for resource in _resources(source):
        resource.apply_hints(columns=hints)
        resource.add_map(guard)
        if guard.refused is not None:
            resource.add_filter(_not_refused)
    return source


def _not_refused(item: Any) -> bool:
    return item is not REFUSED


def as_json(value: Any) -> str:
    """JSON for a source record: values JSON lacks (datetimes, decimals, bytes) as their text."""
    return json.dumps(value, default=str, ensure_ascii=False)


def requested_dispositions(source: Any) -> set[str]:
    """The ``write_disposition`` each selected resource declares (dlt's default is ``append``)."""
    found = set()
    for resource in _resources(source):
        disposition = resource.write_disposition
        found.add(str(disposition.get("disposition") if isinstance(disposition, Mapping) else disposition))
    return found


def _resources(source: Any) -> Iterator[Any]:
    from dlt.extract import DltResource, DltSource

    if isinstance(source, DltResource):
        yield source
    elif isinstance(source, DltSource):
        yield from source.selected_resources.values()


def restore_source_order(batch: pa.Table) -> pa.Table:
    """The staged rows in the order the source yielded them, non-finite floats put back."""
    if SEQUENCE in batch.column_names:
        numbers = batch.column(SEQUENCE)
        if not non_decreasing(numbers):  # dlt keeps the order within a file: the common case copies nothing
            positions = SourcePositions()(numbers)
            order = np.argsort(positions, kind="stable")
            if not strictly_increasing(positions[order]):
                raise SourceOrderError()
            batch = batch.take(order)
        batch = batch.drop_columns([SEQUENCE])
    if NONFINITE in batch.column_names:
        batch = _put_back_nonfinite(batch)
    return batch


def non_decreasing(values: pa.ChunkedArray | pa.Array) -> bool:
    """Whether no value is smaller than the one before it (no nulls)."""
    if len(values) < 2:
        return True
    later = pc.greater_equal(values.slice(1), values.slice(0, len(values) - 1))
    return bool(pc.all(later).as_py()) and values.null_count == 0


class SourcePositions:
    """Each staged row's position in the source, from the numbers the guard gave the records.

    A record carries its own position. The rows of an Arrow item all carry the position of the
    item's first row, and they stay together and in order in the staged files (dlt writes an item
    whole into one file), so a row's position is its number plus the rows of the same number
    before it. Called on the pieces of one stream in turn (a file read in chunks), an item cut
    by a piece's end continues in the next piece.
    """

    def __init__(self) -> None:
        self.last: int | None = None  # the number of the previous piece's last row
        self.run = 0  # rows of that number so far

    def __call__(self, numbers: pa.ChunkedArray | pa.Array) -> np.ndarray:
        values = np.asarray(numbers.to_numpy(), dtype=np.int64)
        if len(values) == 0:
            return values
        first = np.empty(len(values), dtype=bool)  # where a new number starts
        first[0] = values[0] != self.last
        np.not_equal(values[1:], values[:-1], out=first[1:])
        if first.all():  # records only, or items of one row: the numbers are the positions
            positions = values
            offset_of_last = 0
        else:
            index = np.arange(len(values))
            offsets = index - np.maximum.accumulate(np.where(first, index, 0))
            if not first[0]:
                offsets[: int(np.argmax(first)) if first.any() else len(values)] += self.run
            positions = values + offsets
            offset_of_last = int(offsets[-1])
        self.last, self.run = int(values[-1]), offset_of_last + 1
        return positions


def distinct_positions(positions: np.ndarray) -> bool:
    """Whether no two rows have the same (non-negative) position: one pass, a byte per position."""
    if len(positions) == 0:
        return True
    seen = np.zeros(int(positions.max()) + 1, dtype=bool)
    seen[positions] = True
    return int(np.count_nonzero(seen)) == len(positions)


class SourceOrderError(Exception):
    """The staged rows' source order cannot be recovered: dlt wrote an Arrow item in pieces."""

    def __init__(self) -> None:
        super().__init__(
            "dlt staged the rows of one Arrow item in more than one place, so the order the source "
            "yielded them in is lost; nothing was written. Please report this with your dlt version."
        )


def positions_column(table: pa.Table, positions: SourcePositions) -> pa.Table:
    """``table`` with its ``_cascade_seq`` numbers replaced by each row's own position."""
    index = table.column_names.index(SEQUENCE)
    return table.set_column(index, SEQUENCE, pa.array(positions(table.column(SEQUENCE)), pa.int64()))


def _put_back_nonfinite(batch: pa.Table) -> pa.Table:
    carried = batch.column(NONFINITE)
    batch = batch.drop_columns([NONFINITE])
    if carried.null_count == len(carried):
        return batch
    values: dict[str, list[Any]] = {}
    for row, text in enumerate(carried.to_pylist()):
        if text is None:
            continue
        for column, value in json.loads(text).items():
            if column not in values:
                values[column] = batch.column(column).to_pylist()
            values[column][row] = float(value)
    for column, restored in values.items():
        index = batch.column_names.index(column)
        batch = batch.set_column(index, column, pa.array(restored, batch.column(column).type))
    return batch


@dataclass(frozen=True)
class BatchKeys:
    """What the key columns of a whole staged batch say, read without its other columns."""

    keys: pa.Table  # each key once
    superseded: pa.Array  # sequence numbers of records a later record of the same key replaces
    rows: int
    repeated_rows: int = 0  # rows whose key another row shares (as Pandera's ``unique`` counts them)
    repeated_examples: tuple[str, ...] = ()


def batch_keys(
    files: Sequence[str], keys: tuple[str, ...], *, keep_keys: bool = False, known_distinct: bool = False
) -> BatchKeys:
    """The batch's superseded records (and, with ``keep_keys``, its keys), reading only the key
    columns and the sequence.

    What a streamed merge holds in memory, whatever the day's size: the key columns once. A day
    whose keys are all distinct (the common case) is recognised by sorting a single numeric key
    (10M int64 keys: about 1 s and 80 MB more, where a hash group-by took 16 s and 850 MB);
    only a day with repeated keys pays for finding which records a later one supersedes. When the
    source's keys were seen to increase (``known_distinct``, see :class:`AscendingKey`), nothing
    is read unless the keys are wanted.
    """
    import pyarrow.parquet as pq

    if not files:
        return BatchKeys(pa.table({k: pa.array([]) for k in keys}), pa.array([], pa.int64()), 0)
    distinct = None
    if not keep_keys:
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
        distinct = known_distinct or sorted_keys_distinct(files, keys, rows)
        if distinct:
            return BatchKeys(pa.table({k: pa.array([]) for k in keys}), pa.array([], pa.int64()), rows)
    if distinct is None:  # not answered by sorting: read the keys and look
        read = pa.concat_tables(
            [pq.read_table(path, columns=list(keys)) for path in files], promote_options="permissive"
        )
        if known_distinct or all_distinct(read, keys):
            return BatchKeys(read if keep_keys else read.slice(0, 0), pa.array([], pa.int64()), read.num_rows)
        del read
    parts = [pq.read_table(path, columns=[*keys, SEQUENCE]) for path in files]
    numbered = positions_column(pa.concat_tables(parts, promote_options="permissive"), SourcePositions())
    if not distinct_positions(numbered.column(SEQUENCE).to_numpy()):  # superseded records are dropped by position
        raise SourceOrderError()
    groups = numbered.group_by(list(keys), use_threads=False).aggregate([(SEQUENCE, "max"), (SEQUENCE, "count")])
    repeated = groups.filter(pc.greater(groups.column(f"{SEQUENCE}_count"), 1))
    candidates = numbered.join(
        repeated.select([*keys, f"{SEQUENCE}_max"]), keys=list(keys), join_type="inner", use_threads=False
    )
    later = pc.less(candidates.column(SEQUENCE), candidates.column(f"{SEQUENCE}_max"))
    superseded = candidates.filter(later).column(SEQUENCE).combine_chunks()
    examples = tuple(
        repr(row[keys[0]] if len(keys) == 1 else tuple(row.values()))
        for row in repeated.select(list(keys)).slice(0, 3).to_pylist()
    )
    repeated_rows = int(pc.sum(repeated.column(f"{SEQUENCE}_count")).as_py())
    kept = groups.select(list(keys)) if keep_keys else groups.select(list(keys)).slice(0, 0)
    return BatchKeys(kept, superseded, numbered.num_rows, repeated_rows, examples)


KEY_READ_ROWS = 1 << 18  # key values read at a time while filling the array that is sorted
# key types whose values compare as integers of this type (the rest are grouped by hash)
SORTABLE_AS = {
    pa.timestamp("us").id: pa.int64(),
    pa.date32().id: pa.int32(),
    pa.date64().id: pa.int64(),
}


def sorted_keys_distinct(files: Sequence[str], keys: tuple[str, ...], rows: int) -> bool | None:
    """Whether a single integer-like key, read file by file into one array and sorted in place,
    holds no value twice; ``None`` when sorting cannot tell (another kind of key, or nulls)."""
    import pyarrow.parquet as pq

    if len(keys) != 1:
        return None
    kind = pq.read_schema(files[0]).field(keys[0]).type
    as_integers = integer_type(kind)
    if as_integers is None:
        return None
    ordered = np.empty(rows, dtype=as_integers.to_pandas_dtype())
    filled = 0
    for path in files:
        for piece in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=KEY_READ_ROWS, columns=list(keys)):
            column = piece.column(0)
            if column.null_count or column.type != kind or filled + len(column) > rows:
                return None
            ordered[filled : filled + len(column)] = column.cast(as_integers).to_numpy(zero_copy_only=False)
            filled += len(column)
    if filled != rows:
        return None
    return not holds_repeats(ordered)


def integer_type(kind: pa.DataType) -> pa.DataType | None:
    """The integer type a key's values sort and compare as, or ``None`` (such keys are hashed)."""
    return kind if pa.types.is_integer(kind) else SORTABLE_AS.get(kind.id)


def holds_repeats(values: Any) -> bool:
    """Whether a numpy integer array holds a value twice.

    Keys spread over a range at most :data:`DENSE_RANGE` times their count (ids from a sequence,
    in any order) are answered in a pass, one flag per value of the range; others by sorting, a
    writable array in place (one copy of the keys, not two), a read-only one copied first (see
    :func:`sorted_distinct`).
    """
    if len(values) < 2:
        return False
    dense = repeats_in_dense_range(values)
    return dense if dense is not None else len(sorted_distinct(values)) != len(values)


DENSE_RANGE = 2  # flags for a range this many times the keys' count take at most a quarter of an int64 key's bytes


def repeats_in_dense_range(values: Any) -> bool | None:
    """Whether integer keys hold a value twice, answered by setting a flag per key in an array as
    long as their range (10M shuffled ids: 0.1 s, where sorting took 1 s); ``None`` when the range
    is wider than :data:`DENSE_RANGE` times the count of keys (the flags would outgrow the keys)."""
    low, high = values.min(), values.max()
    if int(high) - int(low) >= DENSE_RANGE * len(values):
        return None
    seen = np.zeros(int(high) - int(low) + 1, dtype=bool)
    # offsets from the lowest key, taken in the unsigned type of the same width: exact (they are
    # below the range), where the signed type's subtraction overflows for a range past its maximum
    unsigned = np.dtype(f"u{values.dtype.itemsize}")
    base = np.asarray(low).view(unsigned)
    for start in range(0, len(values), KEY_READ_ROWS):
        seen[values[start : start + KEY_READ_ROWS].view(unsigned) - base] = True
    return int(np.count_nonzero(seen)) != len(values)


def sorted_distinct(values: Any) -> Any:
    """A numpy array's distinct values, sorted: the array itself when its values already strictly
    increase, else sorted in place (a copy first, if read-only) with repeats dropped.

    A million integer keys: 50 ms, where Arrow's hash set and a sort of it took 170 ms and held
    more (and numpy 2's ``unique`` takes 650 ms).
    """
    if strictly_increasing(values):
        return values
    if not values.flags.writeable:
        values = values.copy()
    values.sort()
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    return values if first.all() else values[first]


def strictly_increasing(values: Any) -> bool:
    """Whether a numpy array's values strictly increase: then they are sorted and distinct already.

    Sequential and time-ordered ids (the common keys) arrive this way; one pass instead of a sort
    (10M int64 keys: 0.02 s instead of 0.5 s).
    """
    return len(values) < 2 or bool(np.greater(values[1:], values[:-1]).all())


def all_distinct(rows: pa.Table, keys: tuple[str, ...]) -> bool:
    """Whether no two rows share a key (nulls included: a null key is refused later, by name)."""
    if rows.num_rows < 2:
        return True
    sorted_answer = distinct_by_sorting(rows, keys)
    if sorted_answer is not None:
        return sorted_answer
    return bool(rows.group_by(list(keys), use_threads=False).aggregate([]).num_rows == rows.num_rows)


def distinct_by_sorting(rows: pa.Table, keys: tuple[str, ...]) -> bool | None:
    """Whether no two rows share a single integer-like key, answered by sorting a copy of the key
    column (a million keys: 2 ms where a hash group-by took 470 ms); ``None`` when sorting cannot
    tell (another kind of key, or nulls)."""
    if len(keys) != 1 or rows.column(keys[0]).null_count:
        return None
    column = rows.column(keys[0])
    as_integers = integer_type(column.type)
    if as_integers is None:
        return None
    return not holds_repeats(column.cast(as_integers).to_numpy())  # a copy when there are several chunks
