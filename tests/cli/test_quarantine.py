"""``cascade quarantine list|show|replay|drop``, in process."""

from __future__ import annotations

from typing import Any

import pytest

import cascade
from cascade import load_config
from cascade.asset_registry import Registry, isolated_registry
from tests.conftest import invoke_cli, read_table
from tests.integration.test_quarantine import AboveMinusThree, things_asset

DAY = "2024-01-01"
BATCH = [{"id": "a", "n": 3}, {"id": "b", "n": -1}, {"id": "c", "n": -5}, {"id": "d", "n": "x"}]


@pytest.fixture
def landed(cli, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A partition run with three of four rows quarantined, in the working directory's catalog."""
    monkeypatch.setenv("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")
    cascade.run(things_asset({DAY: BATCH}), DAY, config=load_config())


def invoke(*args: str, code: int = 0) -> Any:
    done = invoke_cli("quarantine", *args)
    assert done.exit_code == code, done.output
    return done.json() if "--json" in args and code == 0 else done.output


def test_list_counts_checks_and_first_seen(landed: None) -> None:
    (entry,) = invoke("list", "--json")
    assert {k: v for k, v in entry.items() if k != "first_seen"} == {
        "asset": "things",
        "partition": DAY,
        "branch": "main",
        "rows": 3,
        "checks": {"n: greater_than_or_equal_to(0)": 2, "n: type": 1},
    }
    assert entry["first_seen"].startswith("20")
    assert "things" in invoke("list")


def test_show_lists_the_rows_with_their_failures(landed: None) -> None:
    rows = {r["key"]["id"]: r for r in invoke("show", "things", "--date", DAY, "--json")}
    assert set(rows) == {"b", "c", "d"}
    assert rows["d"]["record"] == {"id": "d", "n": "x"} and rows["d"]["checks"] == ["n: type"]
    assert rows["b"]["checks"] == ["n: greater_than_or_equal_to(0)"] and rows["b"]["columns"] == ["n"]


def test_replay_after_relaxing_moves_the_rows_that_pass(landed: None) -> None:
    with isolated_registry():
        things_asset({}, model=AboveMinusThree)
        result = invoke("replay", "things", "--date", DAY, "--json")
    assert (result["rows_inserted"], result["rows_quarantined"]) == (1, 2)
    assert {r["id"]: r["n"] for r in read_table(load_config(), "q.things").to_pylist()} == {"a": 3, "b": -1}
    assert {r["key"]["id"] for r in invoke("show", "things", "--date", DAY, "--json")} == {"c", "d"}


def test_drop_needs_yes_then_empties_the_partition(landed: None) -> None:
    assert "needs --yes" in invoke("drop", "things", "--date", DAY, code=2)
    assert invoke("drop", "things", "--date", DAY, "--yes", "--json") == {
        "asset": "things",
        "partition": DAY,
        "rows_dropped": 3,
    }
    assert invoke("list", "--json") == []
