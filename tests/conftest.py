"""Shared fixtures: a temporary embedded catalog, the Nightscout-compatible server, helpers.

Everything here is real: a pyiceberg SQL catalog on SQLite in a temporary folder, real dlt
pipelines, and an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import os

# dlt's HTTP client retries 5xx with long backoff by default; keep failing tests fast.
os.environ.setdefault("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
os.environ.setdefault("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.05")
os.environ.setdefault("RUNTIME__REQUEST_TIMEOUT", "10")
# The run-history plugin would add a cascade.runs table to every test's catalog; its own tests
# enable it (in process by registering it, across processes by clearing this list).
os.environ["CASCADE_BLOCKED_PLUGINS"] = "cascade-runlog"  # before the imports: they load hook plugins

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from cascade import CascadeConfig
from cascade.catalog import open_catalog
from cascade.registry import Registry, isolated_registry
from cascade_nightscout.server import NightscoutServer

NIGHTSCOUT_TOKEN = "ns-T0ken-for-tests-7f3a"


@pytest.fixture
def config(tmp_path: Path) -> CascadeConfig:
    """An embedded catalog and warehouse in a fresh temporary folder."""
    return CascadeConfig(home=tmp_path / "cascade")


@pytest.fixture(scope="session")
def nightscout_server() -> Iterator[NightscoutServer]:
    with NightscoutServer(token=NIGHTSCOUT_TOKEN) as server:
        yield server


@pytest.fixture
def nightscout(nightscout_server: NightscoutServer) -> Iterator[NightscoutServer]:
    """The shared server, healed of any fault before and after each test."""
    nightscout_server.heal()
    yield nightscout_server
    nightscout_server.heal()


@pytest.fixture
def ns_config(config: CascadeConfig, nightscout: NightscoutServer) -> CascadeConfig:
    """``config`` pointed at the local Nightscout server."""
    return replace(config, plugins={"nightscout": {"url": nightscout.url, "token": NIGHTSCOUT_TOKEN}})


@pytest.fixture
def registry() -> Iterator[Registry]:
    """An empty registry for assets a test defines."""
    with isolated_registry() as fresh:
        yield fresh


def read_table(config: CascadeConfig, identifier: str, branch: str = "main") -> pa.Table:
    table = open_catalog(config).load_table(identifier)
    snapshot = table.snapshot_by_name(branch)
    if snapshot is None:
        return table.schema().as_arrow().empty_table()
    return table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()


def snapshot_id(config: CascadeConfig, identifier: str, branch: str = "main") -> int | None:
    catalog = open_catalog(config)
    if not catalog.table_exists(identifier):
        return None
    snapshot = catalog.load_table(identifier).snapshot_by_name(branch)
    return snapshot.snapshot_id if snapshot else None
