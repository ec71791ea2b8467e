"""Replay a partition's quarantined rows: those that now pass are merged, the rest stay aside.

A replay is an ordinary :func:`cascade.run` whose source yields the quarantined records as
they were kept (every source field, from JSON), under the asset's current schema and checks.
It always quarantines (whatever the asset's ``on_invalid``), never fails on the invalid
fraction (every replayed row was invalid once), and merges (a partition replace would delete
the partition's good rows). Its quarantine commit replaces the partition's quarantined rows
with the ones that still fail, so the rows that pass leave quarantine in the same run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pyarrow.compute as pc

from cascade.asset_registry import registry
from cascade.catalog import open_catalog
from cascade.config import CascadeConfig, load_config
from cascade.ingestion import CascadeAsset
from cascade.naming import resolve_branch, table_identifier
from cascade.quarantine import quarantine_identifier, read_quarantine
from cascade.results import IngestionResult
from cascade.runner import check_partition, run

REPLAY_TAG = "cascade/replay"


def quarantined_records(
    asset: CascadeAsset[Any, Any], partition: str, *, branch: str, config: CascadeConfig
) -> list[dict[str, Any]]:
    """The records quarantined for one partition and branch of ``asset``, in the order they were kept."""
    namespace, table_name = table_identifier(asset.spec, config)
    rows = read_quarantine(
        open_catalog(config),
        quarantine_identifier(asset.spec, namespace, table_name),
        partition=partition,
        branch=branch,
    )
    rows = rows.filter(pc.equal(rows.column("asset"), asset.spec.name))
    return [json.loads(text) for text in rows.column("record").to_pylist()]


def replay(
    asset: CascadeAsset[Any, Any] | str,
    partition_date: str,
    *,
    branch: str | None = None,
    config: CascadeConfig | None = None,
) -> IngestionResult:
    """Re-validate one partition's quarantined rows against ``asset`` as it is now; merge those that pass."""
    import dlt

    if isinstance(asset, str):
        asset = registry().get(asset)
    config = config or load_config()
    partition = check_partition(asset.spec.name, partition_date)
    chosen = resolve_branch(branch, {}, config)
    records = quarantined_records(asset, partition, branch=chosen, config=config)
    spec = replace(asset.spec, on_invalid="quarantine", max_invalid_fraction=1.0, mode="merge")

    def quarantined(partition_date: str) -> Any:
        return dlt.resource(records, name=spec.table_name)

    return run(CascadeAsset(quarantined, spec), partition, branch=chosen, config=config, tags={REPLAY_TAG: "true"})
