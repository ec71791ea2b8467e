"""Downstream assets read Cascade tables through this IO manager; Cascade assets write through ``cascade.run``."""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
import pyarrow as pa

from cascade import ConfigurationError
from cascade_dagster.resource import CascadeResource

IO_MANAGER_KEY = "cascade_io_manager"
BRANCH_METADATA = "cascade/branch"
TABLE_METADATA = "dagster/table_name"
Frame = Literal["pyarrow", "pandas", "polars"]
FRAMES: tuple[Frame, ...] = ("pyarrow", "pandas", "polars")


class CascadeIOManager(dg.IOManager):
    """Loads a Cascade table as the downstream input's annotation asks: pyarrow, pandas or Polars.

    A partitioned downstream asset reads only the upstream partitions it maps to, by a filter on
    the table's partition column. The branch is the input's ``cascade/branch`` metadata
    (``AssetIn(metadata={"cascade/branch": "dev"})``), else ``branch`` here, else main.
    """

    def __init__(self, cascade: CascadeResource, *, branch: str | None = None, default_frame: Frame = "pyarrow"):
        self.cascade = cascade
        self.branch = branch
        self.default_frame: Frame = default_frame

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is not None:
            raise dg.DagsterInvariantViolationError(
                f"asset {context.asset_key.to_user_string()}: Cascade assets are written by cascade.run, "
                f"not from a returned {type(obj).__name__}"
            )

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        table = upstream.definition_metadata.get(TABLE_METADATA) if upstream is not None else None
        if table is None:
            raise dg.DagsterInvariantViolationError(
                f"input {context.name!r}: the upstream asset has no {TABLE_METADATA!r}; is it a Cascade asset?"
            )
        partitions = list(context.asset_partition_keys) if context.has_asset_partitions else None
        branch = (context.definition_metadata or {}).get(BRANCH_METADATA) or self.branch
        rows = self.cascade.read_table(str(table), partitions=partitions, branch=branch)
        return as_frame(rows, frame_for(context.dagster_type.typing_type, self.default_frame))


def frame_for(annotation: Any, default: Frame) -> Frame:
    """The frame an input's type annotation names, by module, so pandas and Polars stay optional."""
    module = getattr(annotation, "__module__", "") or ""
    if module.startswith("pandas"):
        return "pandas"
    if module.startswith("polars"):
        return "polars"
    if module.startswith("pyarrow"):
        return "pyarrow"
    return default


def as_frame(rows: pa.Table, frame: Frame) -> Any:
    if frame == "pandas":
        return rows.to_pandas()
    if frame == "polars":
        import polars as pl  # an optional extra: cascade-dagster[polars]

        return pl.from_arrow(rows)
    return rows


@dg.io_manager(
    required_resource_keys={"cascade"},
    config_schema={
        "branch": dg.Field(str, is_required=False, description="Branch to read when an input names none."),
        "default_frame": dg.Field(
            str,
            default_value="pyarrow",
            description="pyarrow, pandas or polars, for inputs without a type annotation.",
        ),
    },
    description="Reads Cascade tables for downstream assets (pyarrow, pandas or Polars).",
)
def cascade_io_manager(init_context: dg.InitResourceContext) -> CascadeIOManager:
    # A function-style IO manager: a ConfigurableIOManager holding CascadeResource as a nested
    # resource trips a deprecation warning inside Dagster 1.13 (InitResourceContext.dagster_run).
    config = init_context.resource_config
    frame = config["default_frame"]
    if frame not in FRAMES:
        raise ConfigurationError(f"cascade_io_manager: default_frame {frame!r} is not one of {', '.join(FRAMES)}")
    return CascadeIOManager(init_context.resources.cascade, branch=config.get("branch"), default_frame=frame)
