"""Entry-point discovery through really installed plugin packages, each in a fresh interpreter.

``cascade-testplugin`` and ``cascade-testplugin-broken`` (tests/plugins/) are pip-installed into
the test environment by the nox session, as users install plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import cascade

PROBE = """
import json, cascade
from cascade.errors import CascadeError
try:
    found = cascade.discover()
except CascadeError as error:
    print(json.dumps({"error": type(error).__name__, "message": str(error)}))
else:
    print(json.dumps({
        "assets": {a.spec.name: [a.spec.identifier, a.spec.plugin] for a in found.assets},
        "failures": {f.plugin: f"{type(f.error).__name__}: {f.error}" for f in found.failures},
    }))
"""


def discover_in_subprocess(**env: str) -> dict:
    environment = {**os.environ, **env}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=environment, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_installed_plugins_are_discovered() -> None:
    found = discover_in_subprocess()
    assets = found["assets"]
    assert assets["readings"] == ["testing.readings", "cascade-testplugin"]  # module entry point
    assert assets["gadgets"] == ["testing.gadgets", "cascade-testplugin"]  # object entry point
    assert assets["glucose"] == ["nightscout.glucose", "cascade-nightscout"]


def test_broken_plugin_is_reported_and_hides_nothing() -> None:
    found = discover_in_subprocess()
    assert found["failures"] == {
        "cascade-testplugin-broken": "ModuleNotFoundError: No module named 'cascade_dependency_that_does_not_exist'"
    }
    assert {"readings", "gadgets", "glucose"} <= set(found["assets"])


def test_same_table_from_two_plugins_names_both() -> None:
    found = discover_in_subprocess(CASCADE_TESTPLUGIN_CLASH="1")
    assert found["error"] == "DuplicateAssetError"
    assert "table 'testing.readings' is claimed twice" in found["message"]
    assert "'readings' of plugin 'cascade-testplugin'" in found["message"]
    assert "'other_readings' of plugin 'cascade-testplugin'" in found["message"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"CASCADE_BLOCKED_PLUGINS": "cascade-testplugin-broken"}, {}, id="block-broken"),
        pytest.param({"CASCADE_DISABLE_PLUGIN_AUTOLOAD": "1"}, {}, id="autoload-off"),
    ],
)
def test_switches(env: dict[str, str], expected: dict) -> None:
    found = discover_in_subprocess(**env)
    assert found["failures"] == expected
    if "CASCADE_DISABLE_PLUGIN_AUTOLOAD" in env:
        assert found["assets"] == {}


# --- one table, one owner: tables are compared after [namespaces] maps groups ----------------------


def two_assets_on_one_table() -> None:
    from dlt import resource
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField, StringType

    from cascade import cascade_ingestion

    schema = Schema(NestedField(1, "id", StringType(), required=False))

    @cascade_ingestion(table_name="people", unique_key="id", iceberg_schema=schema, group="crm")
    def crm_people(partition_date: str):
        return resource([], name="people")

    @cascade_ingestion(table_name="people", unique_key="id", iceberg_schema=schema, group="sales")
    def sales_people(partition_date: str):
        return resource([], name="people")


def test_two_assets_mapped_to_one_table_are_refused_naming_both(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from cascade import CascadeConfig
    from cascade.errors import DuplicateAssetError

    monkeypatch.setenv("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")
    two_assets_on_one_table()  # crm.people and sales.people: two tables, as registered
    config = CascadeConfig()
    assert cascade.discover(config).tables == {"crm_people": "crm.people", "sales_people": "sales.people"}
    with pytest.raises(DuplicateAssetError) as caught:
        cascade.discover(replace(config, namespaces={"crm": "raw", "sales": "raw"}))
    message = str(caught.value)
    assert "table 'raw.people' is claimed twice (after [namespaces])" in message
    assert "asset 'crm_people' (group 'crm')" in message and "asset 'sales_people' (group 'sales')" in message


def test_assets_are_found_by_their_resolved_table(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade import CascadeConfig

    monkeypatch.setenv("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")
    two_assets_on_one_table()
    found = cascade.discover(CascadeConfig(namespaces={"crm": "raw_crm"}))
    assert found.tables == {"crm_people": "raw_crm.people", "sales_people": "sales.people"}
    assert cascade.registry().get("raw_crm.people").spec.name == "crm_people"
