"""Entry-point loading is re-entrant: a plugin module that holds an asset and hooks loads once.

Each case runs in a fresh interpreter with a plugin package "installed" the way pip leaves one:
a ``*.dist-info`` folder whose ``entry_points.txt`` names the module, on ``sys.path``. The module
registers an asset (which announces it to the hook plugins) and implements hooks, one of them
defined after the asset, so a module registered half-imported would miss it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = '''
"""An outsider's domain plugin: its own asset, and its own hooks about it."""
import os

import dlt
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType

from cascade import cascade_ingestion, hookimpl

with open(os.environ["PLUGIN_IMPORTS"], "a") as imports:
    imports.write("imported\\n")

SEEN = []


@hookimpl
def cascade_asset_registered(asset):
    if asset.spec.group == "depot":  # its own assets: it is told about every one
        SEEN.append(("asset_registered", asset.spec.name))


@cascade_ingestion(table_name="parcels", unique_key="id", group="depot",
                   iceberg_schema=Schema(NestedField(1, "id", StringType(), required=False)))
def parcels(partition_date):
    return dlt.resource([{"id": f"p-{partition_date}"}], name="parcels")


@hookimpl
def cascade_after_commit(result):  # after the asset: only a whole module has it
    SEEN.append(("after_commit", result.rows_inserted))
'''

PROBE = """
import json, os, sys
import cascade
from cascade.plugins import hooks
from cascade.asset_registry import registry

if os.environ["PROBE_FIRST"] == "import":
    import depot_plugin
if os.environ["PROBE_FIRST"] in ("import", "discover"):
    cascade.discover()
manager = hooks().manager  # the first call, when PROBE_FIRST is "hooks"
result = cascade.run("parcels", "2024-05-01", config=cascade.load_config())
import depot_plugin
plugin = manager.get_plugin("depot-plugin")
print(json.dumps({
    "imports": open(os.environ["PLUGIN_IMPORTS"]).read().count("imported"),
    "asset_plugin": registry().get("parcels").spec.plugin,
    "registered_module": plugin is depot_plugin,
    "hooks": sorted(caller.name for caller in manager.get_hookcallers(plugin) or []),
    "seen": depot_plugin.SEEN,
    "committed": result.committed,
}))
"""


def install(site: Path, groups: list[str]) -> None:
    """Lay the plugin out as pip would: the module and a dist-info with its entry points."""
    dist_info = site / "depot_plugin-0.0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: depot-plugin\nVersion: 0.0.1\n")
    (dist_info / "entry_points.txt").write_text("".join(f"[{group}]\ndepot = depot_plugin\n\n" for group in groups))
    (site / "depot_plugin.py").write_text(PLUGIN)


@pytest.mark.parametrize(
    ("groups", "first"),
    [
        pytest.param(["cascade.assets", "cascade.hooks"], "discover", id="both-groups-discovered"),
        pytest.param(["cascade.hooks"], "hooks", id="hooks-group-only"),
        pytest.param(["cascade.assets", "cascade.hooks"], "import", id="imported-before-discovery"),
    ],
)
def test_a_module_with_an_asset_and_hooks_loads_once(tmp_path: Path, groups: list[str], first: str) -> None:
    site = tmp_path / "site"
    install(site, groups)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "PLUGIN_IMPORTS": str(tmp_path / "imports.txt"),
        "PROBE_FIRST": first,
        "CASCADE_BLOCKED_PLUGINS": "cascade-testplugin-broken,cascade-runlog",
    }
    try:  # the limit only turns a deadlock into a failure; a run takes seconds
        done = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"loading the plugin deadlocked: {hung}")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "imports": 1,
        "asset_plugin": "depot-plugin",
        "registered_module": True,
        "hooks": ["cascade_after_commit", "cascade_asset_registered"],
        "seen": [["asset_registered", "parcels"], ["after_commit", 1]],
        "committed": True,
    }
