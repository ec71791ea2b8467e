"""Which rows of a Cascade table belong to a Dagster partition: a filter on the partition column."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyiceberg.expressions import (
    AlwaysFalse,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    LessThan,
    Or,
    Reference,
)
from pyiceberg.expressions.literals import literal
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import DateType, TimestampType, TimestamptzType

from cascade import ConfigurationError


def partition_filter(
    partitioning: PartitionSpec, schema: Schema, partitions: Sequence[str], *, table: str
) -> BooleanExpression:
    """Rows of ``table`` whose partition column falls on one of ``partitions`` (``YYYY-MM-DD``, UTC days).

    Supports the partitioning Cascade assets use: ``day`` of a timestamp, and ``identity`` of a date.
    """
    if partitioning.is_unpartitioned():
        raise ConfigurationError(f"table {table}: not partitioned, no partition column to filter daily partitions on")
    first = partitioning.fields[0]
    field = schema.find_field(first.source_id)
    days = [dt.date.fromisoformat(p) for p in partitions]
    if isinstance(first.transform, DayTransform) and isinstance(field.field_type, TimestamptzType | TimestampType):
        utc = isinstance(field.field_type, TimestamptzType)
        terms = [_day_range(field.name, day, utc) for day in days]
    elif isinstance(first.transform, IdentityTransform | DayTransform) and isinstance(field.field_type, DateType):
        terms = [EqualTo(term=Reference(field.name), value=literal(day.isoformat())) for day in days]
    else:
        raise ConfigurationError(
            f"table {table}: cannot map daily partitions onto partition field {first.name!r} "
            f"({first.transform} of {field.field_type}); supported: day(timestamp), identity(date)"
        )
    expression: BooleanExpression = AlwaysFalse()
    for term in terms:
        expression = Or(expression, term)
    return expression


def _day_range(column: str, day: dt.date, utc: bool) -> BooleanExpression:
    start = dt.datetime.combine(day, dt.time(), dt.UTC if utc else None)
    end = start + dt.timedelta(days=1)
    return And(
        GreaterThanOrEqual(term=Reference(column), value=literal(start.isoformat())),
        LessThan(term=Reference(column), value=literal(end.isoformat())),
    )
