"""Differences between the Dagster versions the adapter supports, in one place.

Checked on Dagster 1.12.0 (the lowest lock) and 1.13.28 (the latest lock).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import dagster as dg

# Partitioned asset checks (``AssetCheckSpec(partitions_def=...)``, ``AssetCheckEvaluation(partition=...)``)
# arrived after 1.12.0; there, a check result carries the partition in its metadata only.
PARTITIONED_CHECKS = "partitions_def" in inspect.signature(dg.AssetCheckSpec).parameters


def check_spec(
    name: str, *, asset: dg.AssetKey, partitions: dg.PartitionsDefinition, blocking: bool, description: str
) -> dg.AssetCheckSpec:
    """A check partitioned like its asset where Dagster can, else an unpartitioned one."""
    if not PARTITIONED_CHECKS:
        return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description)
    with warnings.catch_warnings():
        # 1.13 marks partitioned checks as a preview; the adapter relies on it knowingly.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, blocking=blocking, description=description, partitions_def=partitions
        )


def check_evaluation(
    *,
    asset: dg.AssetKey,
    name: str,
    partition: str,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    blocking: bool,
    description: str,
    metadata: dict[str, Any],
) -> dg.AssetCheckEvaluation:
    """One partition's check result in a run of several partitions, where ``AssetCheckResult`` has one per step."""
    extra: dict[str, Any] = {"partition": partition} if PARTITIONED_CHECKS else {}
    return dg.AssetCheckEvaluation(
        asset_key=asset,
        check_name=name,
        passed=passed,
        metadata={**metadata, "partition": partition},
        severity=severity,
        description=description,
        blocking=blocking,
        **extra,
    )
