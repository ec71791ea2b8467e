"""Shared fixtures: a temporary embedded catalog, the Nightscout-compatible server, helpers.

Everything here is real: a pyiceberg SQL catalog on SQLite in a temporary folder, real dlt
pipelines, and an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import os

# Sources retry 5xx with backoff (cascade.http); keep failing tests fast, here and in the
# console scripts the tests start.
FAST_HTTP = {"max_attempts": "2", "backoff_seconds": "0.05", "timeout_seconds": "10"}
for _name, _value in FAST_HTTP.items():
    os.environ.setdefault(f"CASCADE_HTTP__{_name.upper()}", _value)
# The run-history plugin would add a cascade.runs table to every test's catalog; its own tests
# enable it (in process by registering it, across processes by clearing this list).
os.environ["CASCADE_BLOCKED_PLUGINS"] = "cascade-runlog"  # before the imports: they load hook plugins

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from cascade import CascadeConfig, HttpPolicy
from cascade.catalog import open_catalog
from cascade.registry import Registry, isolated_registry
from cascade_github.server import GitHubServer
from cascade_nightscout.server import NightscoutServer

NIGHTSCOUT_TOKEN = "ns-T0ken-for-tests-7f3a"
GITHUB_TOKEN = "ghp_TestToken0123456789abcdefABCDEF"


@pytest.fixture
def config(tmp_path: Path) -> CascadeConfig:
    """An embedded catalog and warehouse in a fresh temporary folder."""
    return CascadeConfig(home=tmp_path / "cascade", http=HttpPolicy.from_settings(FAST_HTTP))


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


@pytest.fixture(scope="session")
def github_server() -> Iterator[GitHubServer]:
    with GitHubServer(token=GITHUB_TOKEN) as server:
        yield server


@pytest.fixture
def github(github_server: GitHubServer) -> Iterator[GitHubServer]:
    """The shared GitHub-compatible server, emptied of data, faults and requests for each test."""
    github_server.reset()
    yield github_server
    github_server.reset()


@pytest.fixture
def gh_config(config: CascadeConfig, github: GitHubServer) -> CascadeConfig:
    """``config`` pointed at the local GitHub server, for the user ``octocat``."""
    settings = {"base_url": github.url, "token": GITHUB_TOKEN, "users": ["octocat"], "repositories": ["octo/cat"]}
    return replace(config, plugins={"github": settings})


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
