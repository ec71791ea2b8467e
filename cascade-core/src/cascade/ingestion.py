"""``@cascade_ingestion``: turn a function returning a dlt source into a Cascade asset."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Generic, ParamSpec, TypeVar

from croniter import croniter
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import DateType, TimestampType, TimestamptzType

from cascade.conformance import FLOATING_KEYS, UNSUPPORTED_UUID, floating_keys, uuid_columns
from cascade.errors import AssetDefinitionError
from cascade.naming import is_normalized, normalized_name
from cascade.spec import (
    DEFAULT_MAX_INVALID_FRACTION,
    DEFAULT_START_DATE,
    IDENTIFIER,
    INGESTED_AT,
    MODEL_REFERENCE,
    MODES,
    ON_INVALID,
    PUBLISH,
    QUARANTINE_SUFFIX,
    AssetSpec,
    is_pandera_model,
)

P = ParamSpec("P")
R = TypeVar("R")

"""Namespace and table names: lower-case letters, digits and underscores, so none can escape a folder."""


class CascadeAsset(Generic[P, R]):
    """A decorated function: still callable as written, and carrying its frozen ``spec``."""

    def __init__(self, fn: Callable[P, R], spec: AssetSpec) -> None:
        self.fn = fn
        self.spec = spec
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def accepts_context(self) -> bool:
        """Whether the function declares a ``context`` parameter to receive the run's context."""
        return "context" in inspect.signature(self.fn).parameters

    def __repr__(self) -> str:
        return f"<CascadeAsset {self.spec.name} -> {self.spec.identifier}>"


def cascade_ingestion(
    *,
    table_name: str,
    unique_key: str | Sequence[str],
    iceberg_schema: Schema,
    group: str,
    validation_schema: Any | str | None = None,
    partition_spec: PartitionSpec | None = None,
    cron: str | None = None,
    freshness_hours: tuple[float, float] | None = None,
    max_runtime_seconds: float = 300,
    max_retries: int = 3,
    retry_delay_seconds: float = 30,
    validate: bool = True,
    namespace: str | None = None,
    stable_partitions: bool = False,
    start_date: str | dt.date | None = None,
    mode: str = "merge",
    partition_column: str | None = None,
    on_invalid: str = "fail",
    max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION,
    quarantine_suffix: str = QUARANTINE_SUFFIX,
    publish: str = "direct",
    audits: Mapping[str, str] | None = None,
) -> Callable[[Callable[P, R]], CascadeAsset[P, R]]:
    """Declare an ingestion asset: the decorated function returns a dlt source or resource.

    The function takes the partition date (``YYYY-MM-DD``) as its first argument and may declare
    a ``context`` parameter to receive the :class:`cascade.context.RunContext`.

    Beyond the core parameters, three optional ones refine behaviour: ``namespace`` (defaults
    to ``group``), ``stable_partitions`` (a key's partition columns never change, so merges may
    prune to the batch's partitions even when the partition source is not part of the key), and
    ``start_date`` (the first partition orchestrators should offer).

    ``mode="replace_partition"`` makes each run replace its partition: rows of the partition date
    whose keys the batch lacks are deleted in the same snapshot. Which rows belong to a partition
    is read from ``partition_column`` (a date or timestamp column) or, when not given, from a day
    partition of ``partition_spec``. A resource declared ``write_disposition="replace"`` asks for
    the same at run time.

    ``on_invalid="quarantine"`` keeps rows that fail a check or cannot be converted to their
    column's type in the quarantine table ``<namespace>.<table_name><quarantine_suffix>`` and
    merges the rest, unless more than ``max_invalid_fraction`` of the partition is invalid.
    ``publish="audit"`` commits to a private audit branch, runs ``audits`` (name -> DuckDB SQL
    returning one boolean, with ``batch`` and ``table`` in scope) and the ``cascade_audit`` hook
    against that snapshot, and fast-forwards the target only when every audit passes.

    Every mistake raises :class:`AssetDefinitionError` naming the asset and the parameter.
    """

    def decorate(fn: Callable[P, R]) -> CascadeAsset[P, R]:
        from cascade.asset_registry import register

        spec = build_spec(
            fn,
            table_name=table_name,
            unique_key=unique_key,
            iceberg_schema=iceberg_schema,
            group=group,
            validation_schema=validation_schema,
            partition_spec=partition_spec,
            cron=cron,
            freshness_hours=freshness_hours,
            max_runtime_seconds=max_runtime_seconds,
            max_retries=max_retries,
            retry_delay_seconds=retry_delay_seconds,
            validate=validate,
            namespace=namespace,
            stable_partitions=stable_partitions,
            start_date=start_date,
            mode=mode,
            partition_column=partition_column,
            on_invalid=on_invalid,
            max_invalid_fraction=max_invalid_fraction,
            quarantine_suffix=quarantine_suffix,
            publish=publish,
            audits=audits,
        )
        asset = CascadeAsset(fn, spec)
        register(asset)
        return asset

    return decorate


def build_spec(
    fn: Callable[..., Any],
    *,
    table_name: str,
    unique_key: str | Sequence[str],
    iceberg_schema: Schema,
    group: str,
    validation_schema: Any | None,
    partition_spec: PartitionSpec | None,
    cron: str | None,
    freshness_hours: tuple[float, float] | None,
    max_runtime_seconds: float,
    max_retries: int,
    retry_delay_seconds: float,
    validate: bool,
    namespace: str | None,
    stable_partitions: bool,
    start_date: str | dt.date | None,
    mode: str = "merge",
    partition_column: str | None = None,
    on_invalid: str = "fail",
    max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION,
    quarantine_suffix: str = QUARANTINE_SUFFIX,
    publish: str = "direct",
    audits: Mapping[str, str] | None = None,
) -> AssetSpec:
    """Check every parameter and return the frozen spec; pure apart from inspecting ``fn``."""
    name = getattr(fn, "__name__", repr(fn))

    def fail(parameter: str, problem: str) -> AssetDefinitionError:
        return AssetDefinitionError(name, parameter, problem)

    if not callable(fn):
        raise fail("function", "the decorated object is not callable")
    if not inspect.signature(fn).parameters:
        raise fail("function", "must accept the partition date as its first argument")
    _check_identifier(table_name, "table_name", fail)
    _check_identifier(group, "group", fail)
    _check_identifier(namespace or group, "namespace", fail)
    if not isinstance(iceberg_schema, Schema):
        raise fail("iceberg_schema", f"expected a pyiceberg Schema, got {type(iceberg_schema).__name__}")
    columns = {f.name for f in iceberg_schema.fields}
    _check_normalized([f.name for f in iceberg_schema.fields], "iceberg_schema", fail)
    if INGESTED_AT in columns:
        raise fail("iceberg_schema", f"{INGESTED_AT!r} is added by Cascade; remove it from the schema")
    if uuids := uuid_columns(iceberg_schema):
        raise fail("iceberg_schema", f"column(s) {uuids}: {UNSUPPORTED_UUID}")
    keys = _check_unique_key(unique_key, columns, fail)
    floating = floating_keys(iceberg_schema, keys)
    if floating:
        raise fail("unique_key", f"column(s) {floating}: {FLOATING_KEYS}")
    spec = _check_partition_spec(partition_spec, iceberg_schema, fail)
    if cron is not None and not (isinstance(cron, str) and croniter.is_valid(cron)):
        raise fail("cron", f"{cron!r} is not a valid cron expression (five fields, e.g. '0 */1 * * *')")
    freshness = _check_freshness(freshness_hours, fail)
    if not _is_number(max_runtime_seconds) or max_runtime_seconds <= 0:
        raise fail("max_runtime_seconds", f"must be a positive number of seconds, got {max_runtime_seconds!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise fail("max_retries", f"must be a whole number >= 0, got {max_retries!r}")
    if not _is_number(retry_delay_seconds) or retry_delay_seconds < 0:
        raise fail("retry_delay_seconds", f"must be a number of seconds >= 0, got {retry_delay_seconds!r}")
    if not isinstance(validate, bool):
        raise fail("validate", f"must be True or False, got {validate!r}")
    if validation_schema is not None:
        _check_validation_schema(validation_schema, fail)
    day_column = _check_partition_column(partition_column, iceberg_schema, spec, fail)
    if mode not in MODES:
        raise fail("mode", f"must be one of {list(MODES)}, got {mode!r}")
    if mode == "replace_partition" and day_column is None:
        raise fail("mode", REPLACE_NEEDS_A_DAY)
    if on_invalid not in ON_INVALID:
        raise fail("on_invalid", f"must be one of {list(ON_INVALID)}, got {on_invalid!r}")
    if not _is_number(max_invalid_fraction) or not 0 <= max_invalid_fraction <= 1:
        raise fail("max_invalid_fraction", f"must be a number from 0 to 1, got {max_invalid_fraction!r}")
    if not isinstance(quarantine_suffix, str) or not re.fullmatch(r"_[a-z0-9_]{0,63}", quarantine_suffix):
        raise fail(
            "quarantine_suffix",
            f"must start with '_' and hold lower-case letters, digits and underscores, got {quarantine_suffix!r}",
        )
    if publish not in PUBLISH:
        raise fail("publish", f"must be one of {list(PUBLISH)}, got {publish!r}")
    checked_audits = _check_audits(audits, fail)
    return AssetSpec(
        name=name,
        table_name=table_name,
        unique_key=keys,
        iceberg_schema=iceberg_schema,
        group=group,
        namespace=namespace or group,
        validation_schema=validation_schema,
        partition_spec=spec,
        cron=cron,
        freshness_hours=freshness,
        max_runtime_seconds=float(max_runtime_seconds),
        max_retries=max_retries,
        retry_delay_seconds=float(retry_delay_seconds),
        validate=validate,
        stable_partitions=bool(stable_partitions),
        start_date=_check_start_date(start_date, fail),
        mode=mode,
        partition_column=day_column,
        description=inspect.getdoc(fn) or "",
        plugin=getattr(fn, "__module__", "") or "",
        on_invalid=on_invalid,
        max_invalid_fraction=float(max_invalid_fraction),
        quarantine_suffix=quarantine_suffix,
        publish=publish,
        audits=checked_audits,
    )


Fail = Callable[[str, str], AssetDefinitionError]


def _is_number(value: object) -> bool:
    """A real, finite number (NaN would compare false with every limit and so mean "no limit")."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_identifier(value: object, parameter: str, fail: Fail) -> None:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise fail(parameter, f"{value!r} must be lower-case letters, digits and underscores, starting with a letter")


def _check_unique_key(unique_key: str | Sequence[str], columns: set[str], fail: Fail) -> tuple[str, ...]:
    if isinstance(unique_key, str):
        keys: tuple[object, ...] = (unique_key,)
    elif isinstance(unique_key, Sequence):
        keys = tuple(unique_key)
    else:
        raise fail("unique_key", f"must be a column name or a tuple of column names, got {unique_key!r}")
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise fail("unique_key", f"must name at least one column, each a non-empty string, got {unique_key!r}")
    names = tuple(str(k) for k in keys)
    if len(set(names)) != len(names):
        raise fail("unique_key", f"names a column twice: {names!r}")
    _check_normalized(names, "unique_key", fail)
    missing = [k for k in names if k not in columns]
    if missing:
        raise fail("unique_key", f"column(s) {missing} not in iceberg_schema (columns: {sorted(columns)})")
    return names


def _check_normalized(names: Sequence[str], parameter: str, fail: Fail) -> None:
    """Columns are named as dlt names them, or no staged column would ever match."""
    renamed = {name: _dlt_name(name) for name in names if not is_normalized(name)}
    if renamed:
        described = ", ".join(f"{name!r} becomes {new!r}" for name, new in renamed.items())
        raise fail(parameter, f"column names must be in dlt's normalized form: {described}; use the normalized names")


def _dlt_name(name: str) -> str:
    try:
        return normalized_name(name)
    except ValueError:
        return "nothing (dlt refuses the name)"


def _check_partition_spec(spec: PartitionSpec | None, schema: Schema, fail: Fail) -> PartitionSpec:
    if spec is None:
        return UNPARTITIONED_PARTITION_SPEC
    if not isinstance(spec, PartitionSpec):
        raise fail("partition_spec", f"expected a pyiceberg PartitionSpec, got {type(spec).__name__}")
    ids = {f.field_id: f for f in schema.fields}
    for partition_field in spec.fields:
        source = ids.get(partition_field.source_id)
        if source is None:
            raise fail(
                "partition_spec",
                f"partition field {partition_field.name!r} refers to source id {partition_field.source_id}, "
                f"which is no field of iceberg_schema (ids: {sorted(ids)})",
            )
        if not partition_field.transform.can_transform(source.field_type):
            raise fail(
                "partition_spec",
                f"transform {partition_field.transform} cannot apply to column {source.name!r} ({source.field_type})",
            )
    return spec


REPLACE_NEEDS_A_DAY = (
    "replace_partition must know which rows belong to a partition date: pass partition_column= "
    "(a date or timestamp column), or a partition_spec with a day partition of such a column"
)


def _check_partition_column(column: str | None, schema: Schema, spec: PartitionSpec, fail: Fail) -> str | None:
    """The column whose day says which partition a row belongs to: declared, or the spec's day partition."""
    day_types = (DateType, TimestampType, TimestamptzType)
    if column is not None:
        if not isinstance(column, str) or column not in {f.name for f in schema.fields}:
            raise fail("partition_column", f"{column!r} is not a column of iceberg_schema")
        if not isinstance(schema.find_field(column).field_type, day_types):
            raise fail("partition_column", f"{column!r} must be a date or timestamp column")
        return column
    for partition_field in spec.fields:
        source = schema.find_field(partition_field.source_id)
        by_day = isinstance(partition_field.transform, DayTransform) or (
            isinstance(partition_field.transform, IdentityTransform) and isinstance(source.field_type, DateType)
        )
        if by_day and isinstance(source.field_type, day_types):
            return source.name
    return None


def _check_freshness(freshness: object, fail: Fail) -> tuple[float, float] | None:
    if freshness is None:
        return None
    if not isinstance(freshness, (tuple, list)) or len(freshness) != 2 or not all(_is_number(h) for h in freshness):
        raise fail("freshness_hours", f"must be (warn_hours, fail_hours), got {freshness!r}")
    warn, fail_after = float(freshness[0]), float(freshness[1])
    if warn <= 0 or fail_after <= 0:
        raise fail("freshness_hours", f"hours must be positive, got {freshness!r}")
    if warn > fail_after:
        raise fail("freshness_hours", f"warn hours ({warn:g}) must not exceed fail hours ({fail_after:g})")
    return warn, fail_after


def _check_audits(audits: object, fail: Fail) -> Mapping[str, str]:
    """Audits are named SQL queries; a name is an identifier so it can label a check and an error."""
    if audits is None:
        return MappingProxyType({})
    if not isinstance(audits, Mapping):
        raise fail("audits", f"must be a mapping of audit name to SQL, got {type(audits).__name__}")
    for name, sql in audits.items():
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise fail("audits", f"audit name {name!r} must be lower-case letters, digits and underscores")
        if not isinstance(sql, str) or not sql.strip():
            raise fail("audits", f"audit {name!r} must be a non-empty SQL string, got {sql!r}")
    return MappingProxyType(dict(audits))


def _check_validation_schema(model: Any, fail: Fail) -> None:
    if isinstance(model, str):
        if not MODEL_REFERENCE.fullmatch(model):
            raise fail("validation_schema", f"{model!r} is not a 'module:Class' reference to a pandera model")
    elif not is_pandera_model(model):
        raise fail("validation_schema", f"expected a pandera DataFrameModel class or 'module:Class', got {model!r}")


def _check_start_date(value: str | dt.date | None, fail: Fail) -> dt.date:
    if value is None:
        return DEFAULT_START_DATE
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise fail("start_date", f"must be a date (YYYY-MM-DD), got {value!r}") from None
