"""Cascade's configuration as a Dagster resource, set per deployment the usual Dagster way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import Field
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.table import Table

import cascade
from cascade import MAIN, CascadeConfig, ConfigurationError, open_catalog
from cascade_dagster.partitions import partition_filter


class CascadeResource(ConfigurableResource):  # type: ignore[type-arg]
    """Where Cascade keeps its catalog and pipelines, and which branch it writes by default.

    Unset fields fall back to ``cascade.toml`` and ``CASCADE_*`` variables. Secrets go through
    ``EnvVar``: ``CascadeResource(catalog={"uri": EnvVar("CASCADE_CATALOG_URI")})``.
    """

    home: str | None = Field(default=None, description="Cascade home (pipelines, embedded catalog).")
    branch: str | None = Field(default=None, description="Default branch when a run names none.")
    catalog: dict[str, str] = Field(default_factory=dict, description="pyiceberg catalog properties.")

    def cascade_config(self) -> CascadeConfig:
        config = cascade.load_config()
        if self.home:
            config = replace(config, home=Path(self.home))
        if self.branch:
            config = replace(config, branch=self.branch)
        if self.catalog:
            config = replace(config, catalog_properties={**config.catalog_properties, **self.catalog})
        return config

    def load_table(self, table: str) -> Table:
        """The pyiceberg table ``namespace.table``, for readers such as DuckDB or Polars."""
        return open_catalog(self.cascade_config()).load_table(table)

    def read_table(self, table: str, *, partitions: Sequence[str] | None = None, branch: str | None = None) -> pa.Table:
        """Rows of ``table`` on ``branch`` (default main) as pyarrow, only ``partitions`` when given."""
        iceberg = self.load_table(table)
        head = iceberg.snapshot_by_name(branch or MAIN)
        if head is None:
            if branch not in (None, MAIN):
                raise ConfigurationError(f"table {table}: no branch {branch!r}")
            return iceberg.schema().as_arrow().empty_table()
        rows = (
            partition_filter(iceberg.spec(), iceberg.schema(), partitions, table=table)
            if partitions is not None
            else AlwaysTrue()
        )
        return iceberg.scan(row_filter=rows, snapshot_id=head.snapshot_id).to_arrow()
