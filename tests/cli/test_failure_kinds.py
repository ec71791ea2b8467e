"""Failures of the right kind: a broken catalog file, hooks that exit, unsafe branch names."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import dlt
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

import cascade
from cascade import (
    CascadeConfig,
    cascade_ingestion,
    check_branch_name,
    hookimpl,
    open_catalog,
    register_hooks,
    unregister_hooks,
)
from cascade.asset_registry import Registry
from cascade.errors import ConfigurationError, CorruptCatalogError, HookError
from cascade.staging import leftover_pipelines, pipeline_place
from tests.conftest import snapshot_id

SCHEMA = Schema(NestedField(1, "id", LongType(), required=False))


@pytest.fixture
def numbers(registry: Registry) -> Any:
    @cascade_ingestion(table_name="numbers", unique_key="id", iceberg_schema=SCHEMA, group="kinds")
    def numbers(partition_date: str):  # type: ignore[no-untyped-def]
        return dlt.resource([{"id": int(partition_date[-2:])}], name="numbers")

    return numbers


def test_a_garbage_catalog_file_is_a_terminal_error_naming_it(config: CascadeConfig) -> None:
    config.home.mkdir(parents=True)
    (config.home / "catalog.db").write_bytes(b"\x00garbage, not SQLite" * 50)
    with pytest.raises(CorruptCatalogError) as raised:
        open_catalog(config)
    assert not raised.value.transient  # orchestrators must not retry it forever
    assert str(config.home / "catalog.db") in str(raised.value)


def test_doctor_detects_a_truncated_catalog_file(cli, numbers: Any) -> None:  # type: ignore[no-untyped-def]
    cascade.run(numbers, "2024-05-01", config=cascade.load_config())
    assert json.loads(cli("doctor", "--json").stdout)["healthy"] is True
    catalog_file = Path.cwd() / ".cascade" / "catalog.db"
    # This process's finished runs left SQLite connections to the garbage collector; closing one
    # checkpoints its write-ahead log into the file, which would refill the file truncated below.
    gc.collect()
    catalog_file.write_bytes(b"")
    for leftover in catalog_file.parent.glob("catalog.db-*"):  # what SQLite leaves while connections are open
        leftover.unlink()
    first = cli("doctor", "--json")
    assert first.exit_code == 1
    assert json.loads(first.stdout)["catalog"].startswith(f"EMPTY: {catalog_file} is a 0-byte file")
    catalog_file.unlink()  # a catalog replaced by a fresh one: the tables are only in the warehouse now
    again = json.loads(cli("doctor", "--json").stdout)
    assert again["healthy"] is False
    assert again["tables the catalog does not know"].startswith("kinds.numbers have metadata in the warehouse")


class Exiting:
    def __init__(self, hook: str, error: BaseException) -> None:
        self.hook, self.error = hook, error

    @hookimpl
    def cascade_before_commit(self, context: Any, plan: Any) -> None:
        if self.hook == "cascade_before_commit":
            raise self.error

    @hookimpl
    def cascade_after_commit(self, context: Any, result: Any) -> None:
        if self.hook == "cascade_after_commit":
            raise self.error


class Custom(BaseException):
    pass


@pytest.mark.parametrize("error", [SystemExit(3), Custom("down with the run")], ids=["sys.exit", "base-exception"])
def test_a_hook_exiting_before_the_commit_fails_the_run_naming_it(cli, numbers: Any, error: BaseException) -> None:  # type: ignore[no-untyped-def]
    name = register_hooks(Exiting("cascade_before_commit", error), "exiting-plugin")
    try:
        done = cli("run", "numbers", "--date", "2024-05-01", "--json")
    finally:
        unregister_hooks(name)
    assert done.exit_code == 1, done.output
    assert "hook cascade_before_commit of plugin 'exiting-plugin' failed" in done.stderr
    assert ("SystemExit: exit code 3" if isinstance(error, SystemExit) else "Custom: down with the run") in done.stderr
    assert snapshot_id(cascade.load_config(), "kinds.numbers") is None


def test_a_hook_exiting_after_the_commit_is_reported_and_the_run_succeeds(cli, numbers: Any) -> None:  # type: ignore[no-untyped-def]
    name = register_hooks(Exiting("cascade_after_commit", SystemExit(3)), "exiting-plugin")
    try:
        done = cli("run", "numbers", "--date", "2024-05-01", "--json")
    finally:
        unregister_hooks(name)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["committed"] is True
    failed = [json.loads(line) for line in done.stderr.splitlines() if '"hook failed"' in line]
    assert [(f["plugin"], f["hook"], f["message"]) for f in failed] == [
        ("exiting-plugin", "cascade_after_commit", "exit code 3")
    ]


class BadReturn:
    @hookimpl
    def cascade_after_extract(self, context: Any, rows: Any) -> Any:
        return rows.to_pylist()


def test_a_bad_after_extract_return_names_the_plugin(numbers: Any, config: CascadeConfig) -> None:
    name = register_hooks(BadReturn(), "bad-return")
    try:
        with pytest.raises(HookError, match="plugin 'bad-return' failed: returned list, not None or a pyarrow Table"):
            cascade.run(numbers, "2024-05-01", config=config)
    finally:
        unregister_hooks(name)


UNSAFE = {
    "parent": "..",
    "dot": ".",
    "hidden-parent": "a/../b",
    "dot-part": "a/./b",
    "leading-slash": "/main",
    "trailing-slash": "dev/",
    "double-slash": "dev//x",
    "nul": "dev\x00",
    "newline": "dev\nmain",
    "zero-width-space": "main\u200b",
    "cyrillic-a": "m\u0430in",
    "backslash": "a\\b",
    "space": "my branch",
    "option-like": "-rf",
    "empty": "",
    "too-long": "b" * 129,
}


@pytest.mark.parametrize("branch", UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_branch_names_are_refused(branch: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a valid branch name: use letters, digits"):
        check_branch_name(branch)


@pytest.mark.parametrize("branch", ["main", "dev", "feature/x-1", "release/2024.05", "user_a/fix.2", "b" * 128])
def test_safe_branch_names(branch: str) -> None:
    assert check_branch_name(branch) == branch


def test_a_staging_branch_name_is_refused_to_users() -> None:
    """Chunked merges drop day-old cascade-merge-* branches: a user's branch so named would go too."""
    with pytest.raises(ConfigurationError, match="are Cascade's staging branches"):
        check_branch_name("cascade-merge-review")


@pytest.mark.parametrize("branch", ["..", "main\u200b", "dev\x00"], ids=["parent", "zero-width-space", "nul"])
def test_the_cli_refuses_an_unsafe_branch_as_usage(cli, numbers: Any, branch: str) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ["run", "numbers", "--date", "2024-05-01", "--branch", branch],
        ["backfill", "numbers", "--start", "2024-05-01", "--end", "2024-05-02", "--branch", branch],
    ):
        done = cli(*args)
        assert done.exit_code == 2, done.output
        assert "is not a valid branch name" in done.stderr


def test_a_branch_with_a_slash_stays_one_pipeline_folder(tmp_path: Path) -> None:
    place = pipeline_place(tmp_path, "kinds.numbers", "feature/x", "2024-05-01", "abc")
    assert place.path == tmp_path / "pipelines" / "kinds.numbers" / "feature~x" / "2024-05-01" / "run_abc"
    place.path.mkdir(parents=True)
    assert leftover_pipelines(tmp_path) == [place.path]


def test_a_run_on_a_branch_with_a_slash(numbers: Any, config: CascadeConfig) -> None:
    result = cascade.run(numbers, "2024-05-01", branch="feature/x", config=config)
    assert (result.branch, result.rows_inserted) == ("feature/x", 1)
    assert snapshot_id(config, "kinds.numbers", "feature/x") == result.snapshot_id
