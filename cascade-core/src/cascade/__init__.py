"""Cascade: land data from APIs into Apache Iceberg tables, one partition at a time."""

from __future__ import annotations

__version__ = "0.1.0"

from cascade.config import CascadeConfig, load_config
from cascade.context import RunContext
from cascade.errors import CascadeError
from cascade.http import HttpPolicy, http_session, rest_api_source
from cascade.ingestion import CascadeAsset, cascade_ingestion
from cascade.merge import MergeOutcome, merge_into
from cascade.registry import discover, registry
from cascade.replay import replay
from cascade.results import IngestionResult
from cascade.runner import run
from cascade.spec import INGESTED_AT, AssetSpec

__all__ = [
    "INGESTED_AT",
    "AssetSpec",
    "CascadeAsset",
    "CascadeConfig",
    "CascadeError",
    "HttpPolicy",
    "IngestionResult",
    "MergeOutcome",
    "RunContext",
    "__version__",
    "cascade_ingestion",
    "discover",
    "http_session",
    "load_config",
    "merge_into",
    "registry",
    "replay",
    "rest_api_source",
    "run",
]
