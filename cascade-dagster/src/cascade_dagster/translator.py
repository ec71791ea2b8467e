"""The one override point: how a Cascade asset spec becomes a Dagster ``AssetSpec``.

Subclass :class:`CascadeTranslator` and override :meth:`get_asset_spec` to change keys, groups,
owners, tags or metadata; everything else (partitions, retries, checks) follows from it.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
from pyiceberg.types import IcebergType

from cascade import AssetSpec

ICEBERG_KINDS = {"dlt", "iceberg"}


def column_schema(spec: AssetSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=field.name, type=_type_name(field.field_type), description=field.doc)
            for field in spec.table_schema.fields
        ]
    )


def _type_name(iceberg_type: IcebergType) -> str:
    return str(iceberg_type)


class CascadeTranslator:
    """Translates one frozen :class:`cascade.AssetSpec` into one Dagster ``AssetSpec``."""

    def get_asset_spec(self, spec: AssetSpec) -> dg.AssetSpec:
        freshness = (
            dg.FreshnessPolicy.time_window(
                fail_window=timedelta(hours=spec.freshness_hours[1]),
                warn_window=timedelta(hours=spec.freshness_hours[0]),
            )
            if spec.freshness_hours
            else None
        )
        return dg.AssetSpec(
            key=dg.AssetKey([spec.namespace, spec.table_name]),
            group_name=spec.group,
            description=spec.description or None,
            kinds=ICEBERG_KINDS,
            metadata={
                "dagster/column_schema": column_schema(spec),
                "dagster/table_name": spec.identifier,
                "cascade/asset": spec.name,
                "cascade/unique_key": ", ".join(spec.unique_key),
                "cascade/plugin": spec.plugin,
            },
            freshness_policy=freshness,
        )
