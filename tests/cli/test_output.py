"""What the command prints: stored values as text, one line for broken tables, JSON-only stdout, plain pipes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import dlt
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType
from rich.console import Console

import cascade
from cascade import cascade_ingestion, hookimpl, register_hooks, unregister_hooks
from cascade.asset_registry import Registry
from cascade.catalog import open_catalog
from cascade_cli.output import print_table

SCHEMA = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "note", StringType(), required=False))
MARKUP = ["[/bold]", "[link=https://evil.example]click me[/link]", "[red]alarm[/red]", "tab\there"]


@pytest.fixture
def notes(cli, registry: Registry) -> str:  # type: ignore[no-untyped-def]
    """``app.notes``: rows whose values look like Rich markup."""

    @cascade_ingestion(table_name="notes", unique_key="id", iceberg_schema=SCHEMA, group="app")
    def notes(partition_date: str):  # type: ignore[no-untyped-def]
        return dlt.resource([{"id": i, "note": note} for i, note in enumerate(MARKUP)], name="notes")

    cascade.run(notes, "2024-05-01", config=cascade.load_config())
    return "app.notes"


def test_stored_markup_is_printed_as_text_in_a_pipe(cli, notes: str) -> None:  # type: ignore[no-untyped-def]
    for args in (["show", notes], ["query", f"select * from {notes} order by id"]):
        done = cli(*args)
        assert done.exit_code == 0, done.output
        lines = done.stdout.splitlines()
        assert lines[0].split("\t")[:2] == ["id", "note"]
        assert [line.split("\t")[1] for line in lines[1:]] == ["[/bold]", MARKUP[1], "[red]alarm[/red]", "tab\\there"]


def test_stored_markup_is_printed_as_text_on_a_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    print_table(console, ["id", "note"], list(enumerate(MARKUP)), title="[bold]app.notes")
    shown = screen.getvalue()
    for value in ("[/bold]", "[link=https://evil.example]click me[/link]", "[red]alarm[/red]", "[bold]app.notes"):
        assert value in shown
    assert "\x1b]8;" not in shown  # no hidden hyperlink escape


def test_a_pipe_gets_full_width_tab_separated_lines(cli, registry: Registry) -> None:  # type: ignore[no-untyped-def]
    long_group = "a_group_name_that_is_long_enough_to_be_cut_in_an_eighty_column_table"

    @cascade_ingestion(table_name="wide", unique_key=("id", "note"), iceberg_schema=SCHEMA, group=long_group)
    def wide(partition_date: str):  # type: ignore[no-untyped-def]
        return dlt.resource([], name="wide")

    done = cli("list")
    assert done.exit_code == 0, done.output
    row = next(line.split("\t") for line in done.stdout.splitlines() if line.startswith("wide\t"))
    assert row[:6] == ["wide", long_group, f"{long_group}.wide", "id, note", "-", "-"]


class RaisingOnRegistration:
    @hookimpl
    def cascade_asset_registered(self, asset: Any) -> None:
        raise RuntimeError(f"no thanks for {asset.spec.name}")


def test_json_stdout_stays_json_whatever_a_plugin_logs(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: Registry
) -> None:  # type: ignore[no-untyped-def]
    site = tmp_path / "site"
    (site / "late_plugin-0.0.1.dist-info").mkdir(parents=True)
    (site / "late_plugin-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: late-plugin\n")
    (site / "late_plugin-0.0.1.dist-info" / "entry_points.txt").write_text("[cascade.assets]\nlate = late_assets\n")
    (site / "late_assets.py").write_text(
        "import dlt\nfrom cascade import cascade_ingestion\nfrom tests.cli.test_output import SCHEMA\n\n"
        "@cascade_ingestion(table_name='late', unique_key='id', iceberg_schema=SCHEMA, group='late')\n"
        "def late(partition_date):\n    return dlt.resource([{'id': 1}], name='late')\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "late_assets", raising=False)
    name = register_hooks(RaisingOnRegistration(), "raising-on-registration")
    try:
        listing = cli("list", "--json")
        ran = cli("run", "late", "--date", "2024-05-01", "--json")
    finally:
        unregister_hooks(name)
    assert "late" in [a["asset"] for a in json.loads(listing.stdout)["assets"]]
    assert "no thanks for late" in listing.stderr and "raising-on-registration" in listing.stderr
    assert json.loads(ran.stdout)["rows_inserted"] == 1, ran.output


def _corrupt_metadata(identifier: str) -> None:
    table = open_catalog(cascade.load_config()).load_table(identifier)
    Path(table.metadata_location.removeprefix("file://")).write_text('{"format-version": 2, "garbage')


def _remove_a_data_file(identifier: str) -> None:
    table = open_catalog(cascade.load_config()).load_table(identifier)
    Path(next(iter(table.scan().plan_files())).file.file_path.removeprefix("file://")).unlink()


def _garble_the_catalog(identifier: str) -> None:
    (Path.cwd() / ".cascade" / "catalog.db").write_bytes(b"this is not a database" * 100)


def error_lines(stderr: str) -> list[str]:
    """stderr without the log lines (JSON lines in a pipe) that runs write."""
    return [line for line in stderr.splitlines() if not line.startswith("{")]


BREAKAGES = {"corrupt-metadata": _corrupt_metadata, "missing-data-file": _remove_a_data_file}
COMMANDS = {
    "show": ["show", "app.notes"],
    "show-json": ["show", "app.notes", "--json"],
    "query": ["query", "select count(*) from app.notes"],
    "history": ["history", "app.notes"],
    "tables": ["tables"],
    "branch-list": ["branch", "list", "app.notes"],
    "run": ["run", "notes", "--date", "2024-05-02"],
}
SKIP = {("missing-data-file", "history"), ("missing-data-file", "tables"), ("missing-data-file", "branch-list")}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_a_broken_table_is_one_line_and_exit_1(cli, notes: str, breakage, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    breakage(notes)
    done = cli(*command)
    if (breakage.__name__, command[0]) in SKIP or done.exit_code == 0:  # reads metadata only: still fine
        pytest.skip("this command does not read what was broken")
    assert done.exit_code == 1, done.output
    assert error_lines(done.stderr) == [error_lines(done.stderr)[0]], done.stderr
    assert error_lines(done.stderr)[0].startswith("error: ")
    verbose = cli("--verbose", *command)
    assert "Traceback (most recent call last)" in verbose.stderr and verbose.exit_code == 1


@pytest.mark.parametrize("command", [*COMMANDS.values(), ["list"]], ids=[*COMMANDS.keys(), "list"])
def test_an_unreadable_catalog_is_one_line_and_exit_1(cli, notes: str, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    _garble_the_catalog(notes)
    done = cli(*command)
    if command == ["list"]:
        assert done.exit_code == 0  # listing assets does not open the catalog
        return
    assert done.exit_code == 1, done.output
    assert error_lines(done.stderr) == [error_lines(done.stderr)[0]], done.stderr
    assert error_lines(done.stderr)[0].startswith("error: ") and "catalog.db" in done.stderr
