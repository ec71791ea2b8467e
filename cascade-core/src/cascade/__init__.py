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
    "HttpPolicy": "cascade.http",
    "http_session": "cascade.http",
    "rest_api_source": "cascade.http",
    # hook plugins
    "hookimpl": "cascade.plugins",
    "register_hooks": "cascade.plugins",
    "unregister_hooks": "cascade.plugins",
    # discovering and running
    "CascadeConfig": "cascade.config",
    "load_config": "cascade.config",
    "discover": "cascade.registry",
    "registry": "cascade.registry",
    "Discovery": "cascade.registry",
    "run": "cascade.runner",
    "resolve_branch": "cascade.runner",
    "MAIN": "cascade.runner",
    "BRANCH_TAG": "cascade.runner",
    "SNAPSHOT_TAG_PREFIX": "cascade.runner",
    "IngestionResult": "cascade.results",
    "replay": "cascade.replay",
    "merge_into": "cascade.merge",
    "MergeOutcome": "cascade.merge",
    "conform": "cascade.conform",
    "configure_logging": "cascade.logs",
    # catalogs, tables and branches
    "open_catalog": "cascade.catalog",
    "table_identifier": "cascade.catalog",
    "load_or_create_table": "cascade.catalog",
    "branches": "cascade.catalog",
    "check_branch_name": "cascade.catalog",
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

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


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
    # `X as X`: an explicit re-export, which mypy (strict) and ruff (F401) read; __all__ is computed
    from cascade import hookspecs as hookspecs
    from cascade import testing as testing
    from cascade.audit import PUBLISH_TAG as PUBLISH_TAG
    from cascade.audit import AuditFailedError as AuditFailedError
    from cascade.catalog import branches as branches
    from cascade.catalog import check_branch_name as check_branch_name
    from cascade.catalog import load_or_create_table as load_or_create_table
    from cascade.catalog import open_catalog as open_catalog
    from cascade.catalog import sqlite_file as sqlite_file
    from cascade.catalog import storage_endpoint as storage_endpoint
    from cascade.catalog import table_identifier as table_identifier
    from cascade.config import CascadeConfig as CascadeConfig
    from cascade.config import load_config as load_config
    from cascade.conform import conform as conform
    from cascade.context import RunContext as RunContext
    from cascade.coverage import STATES as STATES
    from cascade.coverage import AssetStatus as AssetStatus
    from cascade.coverage import State as State
    from cascade.coverage import parse_since as parse_since
    from cascade.coverage import table_status as table_status
    from cascade.errors import AssetDefinitionError as AssetDefinitionError
    from cascade.errors import CascadeError as CascadeError
    from cascade.errors import CatalogError as CatalogError
    from cascade.errors import CommitVetoedError as CommitVetoedError
    from cascade.errors import ConfigurationError as ConfigurationError
    from cascade.errors import CorruptCatalogError as CorruptCatalogError
    from cascade.errors import DuplicateAssetError as DuplicateAssetError
    from cascade.errors import FailedCheck as FailedCheck
    from cascade.errors import HookError as HookError
    from cascade.errors import MergeConflictError as MergeConflictError
    from cascade.errors import NullKeyError as NullKeyError
    from cascade.errors import PluginLoadError as PluginLoadError
    from cascade.errors import RunError as RunError
    from cascade.errors import RunTimeoutError as RunTimeoutError
    from cascade.errors import SchemaEvolutionError as SchemaEvolutionError
    from cascade.errors import SchemaMismatchError as SchemaMismatchError
    from cascade.errors import SourceError as SourceError
    from cascade.errors import StagingError as StagingError
    from cascade.errors import StorageError as StorageError
    from cascade.errors import TerminalError as TerminalError
    from cascade.errors import TransientError as TransientError
    from cascade.errors import TransientSourceError as TransientSourceError
    from cascade.errors import UnknownAssetError as UnknownAssetError
    from cascade.errors import ValidationError as ValidationError
    from cascade.evolution import Allow as Allow
    from cascade.evolution import Column as Column
    from cascade.evolution import TableDiff as TableDiff
    from cascade.evolution import apply_asset as apply_asset
    from cascade.evolution import diff_asset as diff_asset
    from cascade.http import HttpPolicy as HttpPolicy
    from cascade.http import http_session as http_session
    from cascade.http import rest_api_source as rest_api_source
    from cascade.ingestion import CascadeAsset as CascadeAsset
    from cascade.ingestion import cascade_ingestion as cascade_ingestion
    from cascade.logs import configure_logging as configure_logging
    from cascade.maintenance import MaintenanceReport as MaintenanceReport
    from cascade.maintenance import maintain as maintain
    from cascade.maintenance_policy import MaintenancePolicy as MaintenancePolicy
    from cascade.maintenance_policy import parse_duration as parse_duration
    from cascade.maintenance_policy import parse_size as parse_size
    from cascade.merge import MergeOutcome as MergeOutcome
    from cascade.merge import merge_into as merge_into
    from cascade.plugins import hookimpl as hookimpl
    from cascade.plugins import register_hooks as register_hooks
    from cascade.plugins import unregister_hooks as unregister_hooks
    from cascade.quarantine import TooManyInvalidRowsError as TooManyInvalidRowsError
    from cascade.quarantine import drop_quarantined as drop_quarantined
    from cascade.quarantine import quarantine_identifier as quarantine_identifier
    from cascade.quarantine import read_quarantine as read_quarantine
    from cascade.redaction import redact as redact
    from cascade.redaction import redact_values as redact_values
    from cascade.redaction import redacted_traceback as redacted_traceback
    from cascade.registry import Discovery as Discovery
    from cascade.registry import discover as discover
    from cascade.registry import registry as registry
    from cascade.replay import replay as replay
    from cascade.results import IngestionResult as IngestionResult
    from cascade.runner import BRANCH_TAG as BRANCH_TAG
    from cascade.runner import MAIN as MAIN
    from cascade.runner import SNAPSHOT_TAG_PREFIX as SNAPSHOT_TAG_PREFIX
    from cascade.runner import resolve_branch as resolve_branch
    from cascade.runner import run as run
    from cascade.spec import INGESTED_AT as INGESTED_AT
    from cascade.spec import AssetSpec as AssetSpec
    from cascade.staging import leftover_pipelines as leftover_pipelines
    from cascade.tables import SnapshotRecord as SnapshotRecord
    from cascade.tables import TableSummary as TableSummary
    from cascade.tables import all_tables as all_tables
    from cascade.tables import ancestry as ancestry
    from cascade.tables import create_branch as create_branch
    from cascade.tables import drop_branch as drop_branch
    from cascade.tables import history as history
    from cascade.tables import ingested_partitions as ingested_partitions
    from cascade.tables import load_table as load_table
    from cascade.tables import parse_identifier as parse_identifier
    from cascade.tables import publish_branch as publish_branch
    from cascade.tables import summarize as summarize
