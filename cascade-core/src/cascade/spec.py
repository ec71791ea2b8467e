"""The frozen description of one Cascade asset, built and checked by ``@cascade_ingestion``."""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, TimestamptzType

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")  # a table, namespace or column name
INGESTED_AT = "_cascade_ingested_at"
"""Column Cascade adds to every table: when the row's current version was ingested (UTC)."""

METADATA_COLUMNS = frozenset({INGESTED_AT})
"""Columns that do not count when deciding whether a stored row changed."""

DEFAULT_START_DATE = dt.date(2024, 1, 1)

ON_INVALID = ("fail", "quarantine")
"""``fail``: one invalid row fails the run. ``quarantine``: invalid rows go to the quarantine table,
the valid ones are merged, unless more than ``max_invalid_fraction`` of the partition is invalid."""

PUBLISH = ("direct", "audit")
"""``direct``: merge into the branch. ``audit``: write-audit-publish through a private audit branch."""

DEFAULT_MAX_INVALID_FRACTION = 0.05
QUARANTINE_SUFFIX = "__quarantine"

MODES = ("merge", "replace_partition")
"""``merge``: upsert on the key, keeping stored rows the batch lacks. ``replace_partition``: the
partition holds exactly the batch afterwards (rows of the day whose keys the batch lacks are deleted)."""


@dataclass(frozen=True)
class AssetSpec:
    """Everything Cascade knows about an asset. Change with ``dataclasses.replace``."""

    name: str
    table_name: str
    unique_key: tuple[str, ...]
    iceberg_schema: Schema
    group: str
    namespace: str
    validation_schema: Any | None = None
    partition_spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC
    cron: str | None = None
    freshness_hours: tuple[float, float] | None = None
    max_runtime_seconds: float = 300
    max_retries: int = 3
    retry_delay_seconds: float = 30
    validate: bool = True
    stable_partitions: bool = False
    start_date: dt.date = DEFAULT_START_DATE
    mode: str = "merge"
    partition_column: str | None = None
    description: str = ""
    plugin: str = field(default="", compare=False)
    on_invalid: str = "fail"
    max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION
    quarantine_suffix: str = QUARANTINE_SUFFIX
    publish: str = "direct"
    audits: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def quarantine_identifier(self) -> str:
        """The quarantine table ``namespace.<table_name><quarantine_suffix>``."""
        return f"{self.namespace}.{self.table_name}{self.quarantine_suffix}"

    @property
    def identifier(self) -> str:
        """The table identifier ``namespace.table_name``."""
        return f"{self.namespace}.{self.table_name}"

    def validation_model(self) -> Any | None:
        """The pandera model runs validate against (``None`` when not validating).

        A ``"module:Class"`` reference is imported on first use, so that declaring an asset
        (and ``cascade list``) does not load pandera.
        """
        if not self.validate or self.validation_schema is None:
            return None
        if isinstance(self.validation_schema, str):
            return resolve_model(self.name, self.validation_schema)
        return self.validation_schema

    @property
    def table_schema(self) -> Schema:
        """The Iceberg schema of the table: the asset's columns plus ``_cascade_ingested_at``."""
        return with_ingested_at(self.iceberg_schema)


def with_ingested_at(schema: Schema) -> Schema:
    """Return ``schema`` with Cascade's ``_cascade_ingested_at`` column appended (if absent)."""
    if INGESTED_AT in {f.name for f in schema.fields}:
        return schema
    next_id = schema.highest_field_id + 1
    return Schema(
        *schema.fields,
        NestedField(next_id, INGESTED_AT, TimestamptzType(), required=False, doc="When Cascade ingested this row"),
        schema_id=schema.schema_id,
        identifier_field_ids=list(schema.identifier_field_ids),
    )


MODEL_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@functools.cache
def resolve_model(asset: str, reference: str) -> Any:
    """Import a ``"module:Class"`` pandera model reference, or say which asset's reference is wrong."""
    from cascade.errors import AssetDefinitionError

    module_name, _, attribute = reference.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise AssetDefinitionError(
            asset, "validation_schema", f"cannot import {reference!r}: {type(error).__name__}: {error}"
        ) from error
    if not is_pandera_model(found, imported=True):
        raise AssetDefinitionError(
            asset, "validation_schema", f"{reference!r} is {found!r}, not a pandera DataFrameModel class"
        )
    return found


def is_pandera_model(model: object, *, imported: bool = False) -> bool:
    """Whether ``model`` is a pandera ``DataFrameModel`` class, without importing pandera for a class
    that cannot be one (pandera not loaded yet means nothing has subclassed its model)."""
    if not imported and "pandera.api.dataframe.model" not in sys.modules:
        return False
    from pandera.api.dataframe.model import DataFrameModel

    return isinstance(model, type) and issubclass(model, DataFrameModel)
