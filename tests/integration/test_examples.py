"""The design notes' examples (``examples/``) run as written, through ``cascade run``.

The example package is imported from the checkout (not installed), into an isolated registry,
and the command runs in process against its API's shape served on 127.0.0.1.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cascade import load_config
from cascade.asset_registry import isolated_registry
from tests.conftest import invoke_cli, read_table

pytestmark = pytest.mark.catalog_sensitive  # the design notes' examples: again on PostgreSQL + S3

EXAMPLE = Path(__file__).parents[2] / "examples" / "my_domain"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[ModuleType, object]]:
    """The example package with its assets registered, pointed at its API on 127.0.0.1."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(tmp_path)
    for name in [m for m in sys.modules if m == "my_domain" or m.startswith("my_domain.")]:
        monkeypatch.delitem(sys.modules, name)
    server_module = importlib.import_module("my_domain.server")
    with server_module.ExampleServer() as server, isolated_registry():
        monkeypatch.setenv("MY_API_URL", server.url)
        yield server_module, server


def cascade_run(*args: str) -> dict[str, object]:
    """One ``cascade run``, in process as in a fresh one."""
    result: dict[str, object] = invoke_cli("run", *args, "--json").json()
    return result


def stored(table: str) -> dict[str, int]:
    config = load_config()  # what the command used: the working directory's, or the shared catalog's
    return {r["id"]: r["amount"] for r in read_table(config, table).select(["id", "amount"]).to_pylist()}


def test_rest_api_example_lands_and_validates_without_coerce(example: tuple[ModuleType, object]) -> None:
    importlib.import_module("my_domain.assets")
    result = cascade_run("my_asset", "--date", "2024-05-01")
    assert (result["rows_extracted"], result["rows_inserted"], result["validation_passed"]) == (5, 5, True)
    assert stored("my_domain.my_table") == {f"2024-05-01-{n}": n * 10 for n in range(5)}


def test_custom_resource_example_replaces_its_day(example: tuple[ModuleType, object]) -> None:
    server_module, server = example
    importlib.import_module("my_domain.assets")
    cascade_run("my_custom_asset", "--date", "2024-05-01")
    cascade_run("my_custom_asset", "--date", "2024-05-02")
    server.records["2024-05-01"] = server_module.day_records("2024-05-01")[:2]  # type: ignore[attr-defined]
    result = cascade_run("my_custom_asset", "--date", "2024-05-01")
    assert (result["rows_deleted"], result["rows_unchanged"]) == (3, 2)
    assert stored("my_domain.my_table_custom") == {
        **{f"2024-05-01-{n}": n * 10 for n in range(2)},
        **{f"2024-05-02-{n}": n * 10 for n in range(5)},
    }
