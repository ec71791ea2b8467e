"""Cascade: land data from APIs into Apache Iceberg tables, one partition at a time.

Everything in ``__all__`` is the public API: what asset authors, hook plugins and the adapters
(``cascade-cli``, ``cascade-dagster``) may use; the submodules behind it may change. Names are
imported on first use, so ``import cascade`` (and ``cascade --help``) does not pay for dlt,
pyiceberg, pandera or pyarrow until a run, a merge or a table operation needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # writing assets
    "cascade_ingestion": "cascade.ingestion",
    "CascadeAsset": "cascade.ingestion",
    "AssetSpec": "cascade.spec",
    "INGESTED_AT": "cascade.spec",
    "RunContext": "cascade.context",
    "HttpPolicy": "cascade.http_policy",
    "http_session": "cascade.sources",
    "rest_api_source": "cascade.sources",
    # hook plugins
    "hookimpl": "cascade.plugins",
    "register_hooks": "cascade.plugins",
    "unregister_hooks": "cascade.plugins",
    # discovering and running
    "CascadeConfig": "cascade.config",
    "load_config": "cascade.config",
    "discover": "cascade.discovery",
    "registry": "cascade.asset_registry",
    "Discovery": "cascade.discovery",
    "run": "cascade.runner",
    "backfill": "cascade.backfills",
    "BackfillReport": "cascade.backfills",
    "BackfillInterrupted": "cascade.backfills",
    "PartitionFailure": "cascade.workers",
    "resolve_branch": "cascade.naming",
    "MAIN": "cascade.naming",
    "BRANCH_TAG": "cascade.naming",
    "SNAPSHOT_TAG_PREFIX": "cascade.naming",
    "IngestionResult": "cascade.results",
    "replay": "cascade.quarantine_replay",
    "merge_into": "cascade.merge",
    "append_into": "cascade.merge",
    "MergeOutcome": "cascade.merge",
    "conform": "cascade.conformance",
    "configure_logging": "cascade.logs",
    # catalogs, tables and branches
    "open_catalog": "cascade.catalog",
    "table_identifier": "cascade.naming",
    "load_or_create_table": "cascade.catalog",
    "branches": "cascade.catalog",
    "check_branch_name": "cascade.naming",
    "sqlite_file": "cascade.catalog",
    "storage_endpoint": "cascade.catalog",
    "load_table": "cascade.tables",
    "parse_identifier": "cascade.tables",
    "all_tables": "cascade.tables",
    "summarize": "cascade.tables",
    "TableSummary": "cascade.tables",
    "history": "cascade.tables",
    "SnapshotRecord": "cascade.tables",
    "ancestry": "cascade.tables",
    "ingested_partitions": "cascade.tables",
    "create_branch": "cascade.tables",
    "drop_branch": "cascade.tables",
    "publish_branch": "cascade.tables",
    "leftover_pipelines": "cascade.staging",
    # schema evolution
    "Allow": "cascade.evolution",
    "Column": "cascade.evolution",
    "TableDiff": "cascade.evolution",
    "diff_asset": "cascade.evolution",
    "apply_asset": "cascade.evolution",
    # maintenance
    "maintain": "cascade.maintenance",
    "MaintenanceReport": "cascade.maintenance",
    "expire_on_commit": "cascade.expiry",
    "ExpiryResult": "cascade.expiry",
    "MaintenancePolicy": "cascade.maintenance_policy",
    "parse_duration": "cascade.maintenance_policy",
    "parse_size": "cascade.maintenance_policy",
    # coverage and freshness
    "table_status": "cascade.coverage",
    "AssetStatus": "cascade.coverage",
    "State": "cascade.coverage",
    "STATES": "cascade.coverage",
    "parse_since": "cascade.coverage",
    # quarantine
    "quarantine_identifier": "cascade.quarantine",
    "read_quarantine": "cascade.quarantine",
    "drop_quarantined": "cascade.quarantine",
    "TooManyInvalidRowsError": "cascade.quarantine",
    # write-audit-publish
    "PUBLISH_TAG": "cascade.audit",
    "AuditFailedError": "cascade.audit",
    # secrets
    "redact": "cascade.redaction",
    "redact_values": "cascade.redaction",
    "redacted_traceback": "cascade.redaction",
    # errors
    "CascadeError": "cascade.errors",
    "TransientError": "cascade.errors",
    "TerminalError": "cascade.errors",
    "AssetDefinitionError": "cascade.errors",
    "ConfigurationError": "cascade.errors",
    "DuplicateAssetError": "cascade.errors",
    "PluginLoadError": "cascade.errors",
    "UnknownAssetError": "cascade.errors",
    "RunError": "cascade.errors",
    "SourceError": "cascade.errors",
    "TransientSourceError": "cascade.errors",
    "RunTimeoutError": "cascade.errors",
    "StagingError": "cascade.errors",
    "FailedCheck": "cascade.errors",
    "ValidationError": "cascade.errors",
    "SchemaMismatchError": "cascade.errors",
    "SchemaEvolutionError": "cascade.errors",
    "NullKeyError": "cascade.errors",
    "CatalogError": "cascade.errors",
    "CorruptCatalogError": "cascade.errors",
    "StorageError": "cascade.errors",
    "MergeConflictError": "cascade.errors",
    "CommitVetoedError": "cascade.errors",
    "HookError": "cascade.errors",
}

# public submodules: test helpers for plugins and the hook specifications
_SUBMODULES = ("testing", "hookspecs")

__all__ = [
    "BRANCH_TAG",
    "INGESTED_AT",
    "MAIN",
    "PUBLISH_TAG",
    "SNAPSHOT_TAG_PREFIX",
    "STATES",
    "Allow",
    "AssetDefinitionError",
    "AssetSpec",
    "AssetStatus",
    "AuditFailedError",
    "BackfillInterrupted",
    "BackfillReport",
    "CascadeAsset",
    "CascadeConfig",
    "CascadeError",
    "CatalogError",
    "Column",
    "CommitVetoedError",
    "ConfigurationError",
    "CorruptCatalogError",
    "Discovery",
    "DuplicateAssetError",
    "ExpiryResult",
    "FailedCheck",
    "HookError",
    "HttpPolicy",
    "IngestionResult",
    "MaintenancePolicy",
    "MaintenanceReport",
    "MergeConflictError",
    "MergeOutcome",
    "NullKeyError",
    "PartitionFailure",
    "PluginLoadError",
    "RunContext",
    "RunError",
    "RunTimeoutError",
    "SchemaEvolutionError",
    "SchemaMismatchError",
    "SnapshotRecord",
    "SourceError",
    "StagingError",
    "State",
    "StorageError",
    "TableDiff",
    "TableSummary",
    "TerminalError",
    "TooManyInvalidRowsError",
    "TransientError",
    "TransientSourceError",
    "UnknownAssetError",
    "ValidationError",
    "__version__",
    "all_tables",
    "ancestry",
    "append_into",
    "apply_asset",
    "backfill",
    "branches",
    "cascade_ingestion",
    "check_branch_name",
    "configure_logging",
    "conform",
    "create_branch",
    "diff_asset",
    "discover",
    "drop_branch",
    "drop_quarantined",
    "expire_on_commit",
    "history",
    "hookimpl",
    "hookspecs",
    "http_session",
    "ingested_partitions",
    "leftover_pipelines",
    "load_config",
    "load_or_create_table",
    "load_table",
    "maintain",
    "merge_into",
    "open_catalog",
    "parse_duration",
    "parse_identifier",
    "parse_since",
    "parse_size",
    "publish_branch",
    "quarantine_identifier",
    "read_quarantine",
    "redact",
    "redact_values",
    "redacted_traceback",
    "register_hooks",
    "registry",
    "replay",
    "resolve_branch",
    "rest_api_source",
    "run",
    "sqlite_file",
    "storage_endpoint",
    "summarize",
    "table_identifier",
    "table_status",
    "testing",
    "unregister_hooks",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"cascade.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cascade' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from cascade import hookspecs, testing
    from cascade.asset_registry import registry
    from cascade.audit import PUBLISH_TAG, AuditFailedError
    from cascade.backfills import BackfillInterrupted, BackfillReport, backfill
    from cascade.catalog import branches, load_or_create_table, open_catalog, sqlite_file, storage_endpoint
    from cascade.config import CascadeConfig, load_config
    from cascade.conformance import conform
    from cascade.context import RunContext
    from cascade.coverage import STATES, AssetStatus, State, parse_since, table_status
    from cascade.discovery import Discovery, discover
    from cascade.errors import (
        AssetDefinitionError,
        CascadeError,
        CatalogError,
        CommitVetoedError,
        ConfigurationError,
        CorruptCatalogError,
        DuplicateAssetError,
        FailedCheck,
        HookError,
        MergeConflictError,
        NullKeyError,
        PluginLoadError,
        RunError,
        RunTimeoutError,
        SchemaEvolutionError,
        SchemaMismatchError,
        SourceError,
        StagingError,
        StorageError,
        TerminalError,
        TransientError,
        TransientSourceError,
        UnknownAssetError,
        ValidationError,
    )
    from cascade.evolution import Allow, Column, TableDiff, apply_asset, diff_asset
    from cascade.expiry import ExpiryResult, expire_on_commit
    from cascade.http_policy import HttpPolicy
    from cascade.ingestion import CascadeAsset, cascade_ingestion
    from cascade.logs import configure_logging
    from cascade.maintenance import MaintenanceReport, maintain
    from cascade.maintenance_policy import MaintenancePolicy, parse_duration, parse_size
    from cascade.merge import MergeOutcome, append_into, merge_into
    from cascade.naming import (
        BRANCH_TAG,
        MAIN,
        SNAPSHOT_TAG_PREFIX,
        check_branch_name,
        resolve_branch,
        table_identifier,
    )
    from cascade.plugins import hookimpl, register_hooks, unregister_hooks
    from cascade.quarantine import TooManyInvalidRowsError, drop_quarantined, quarantine_identifier, read_quarantine
    from cascade.quarantine_replay import replay
    from cascade.redaction import redact, redact_values, redacted_traceback
    from cascade.results import IngestionResult
    from cascade.runner import run
    from cascade.sources import http_session, rest_api_source
    from cascade.spec import INGESTED_AT, AssetSpec
    from cascade.staging import leftover_pipelines
    from cascade.tables import (
        SnapshotRecord,
        TableSummary,
        all_tables,
        ancestry,
        create_branch,
        drop_branch,
        history,
        ingested_partitions,
        load_table,
        parse_identifier,
        publish_branch,
        summarize,
    )
    from cascade.workers import PartitionFailure
