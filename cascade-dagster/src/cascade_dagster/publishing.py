"""Publishing a branch through Dagster: main fast-forwards, and what the branch brought is materialized."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from pyiceberg.table import Table

from cascade import MAIN, AssetSpec, ancestry, publish_branch
from cascade_dagster.resource import CascadeResource


class PublishConfig(dg.Config):
    """The branch to publish onto main."""

    branch: str


def brought_partitions(table: Table, asset: str, branch: str) -> list[str]:
    """Partitions of ``asset`` that commits on ``branch`` since it left main wrote."""
    on_main = {snapshot.snapshot_id for snapshot in ancestry(table, MAIN)}
    partitions = {
        properties.get("cascade.partition", "")
        for snapshot in ancestry(table, branch)
        if snapshot.snapshot_id not in on_main
        and snapshot.summary is not None
        and (properties := snapshot.summary.additional_properties).get("cascade.asset") == asset
    }
    return sorted(partitions - {""})


def build_publish_job(spec: AssetSpec, key: dg.AssetKey) -> dg.JobDefinition:
    """``<asset>_publish``: fast-forward main to the configured branch, then materialize its partitions."""

    @dg.op(name=f"{key.to_python_identifier()}__publish", tags={"cascade/table": spec.identifier})
    def publish(
        context: dg.OpExecutionContext, config: PublishConfig, cascade: CascadeResource
    ) -> Iterator[dg.AssetMaterialization | dg.Output[Any]]:
        table = cascade.load_table(spec.identifier)
        partitions = brought_partitions(table, spec.name, config.branch)
        snapshot = publish_branch(table, config.branch)
        context.log.info(f"table {spec.identifier}: published branch {config.branch!r} ({', '.join(partitions)})")
        for partition in partitions:
            yield dg.AssetMaterialization(
                asset_key=key,
                partition=partition,
                metadata={
                    "dagster/table_name": spec.identifier,
                    "branch": MAIN,
                    "published_from": config.branch,
                    "partition": partition,
                    "snapshot_id": str(snapshot),
                },
            )
        yield dg.Output(None)

    @dg.job(name=f"{spec.name}_publish", description=f"Publish a branch of {spec.identifier} onto main")
    def publish_job() -> None:
        publish()

    return publish_job
