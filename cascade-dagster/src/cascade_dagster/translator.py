"""The one override point: how a Cascade asset spec becomes a Dagster ``AssetSpec``.

Subclass :class:`CascadeTranslator` and override :meth:`get_asset_spec` to change any field of the
Dagster ``AssetSpec`` (key, group, description, owners, tags, kinds, metadata, code_version,
automation_condition, deps, freshness_policy); the built asset carries the returned spec as it is.
Partitions, retries and checks follow from the Cascade spec. Two run-time shapes that are not
``AssetSpec`` fields have their own methods: :meth:`get_backfill_policy` and :meth:`get_pool`.
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
    """Translates one frozen :class:`cascade.AssetSpec` into one Dagster ``AssetSpec``.

    Every method receives the spec with its namespace already resolved through ``[namespaces]``,
    so ``spec.identifier`` names the table runs write.
    """

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

    def get_backfill_policy(self, spec: AssetSpec) -> dg.BackfillPolicy:
        """One run per backfill by default; ``BackfillPolicy.multi_run(n)`` caps partitions per run."""
        return dg.BackfillPolicy.single_run()

    def get_pool(self, spec: AssetSpec) -> str | None:
        """The concurrency pool (one per table): with a pool limit of 1, two runs never write one table at once."""
        return f"cascade__{spec.namespace}__{spec.table_name}"  # Dagster 1.12 allows only [A-Za-z0-9_]
