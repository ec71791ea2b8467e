"""``cascade query`` is read-only: only the Iceberg tables are visible, and nothing else can be read or written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dlt
import pyarrow.dataset as ds
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

import cascade
from cascade import cascade_ingestion
from cascade.asset_registry import Registry
from cascade.catalog import open_catalog
from cascade_cli.query import table_source

SCHEMA = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "name", StringType(), required=False))


@pytest.fixture
def people(cli, registry: Registry, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    """A table ``crm.people`` of 50 rows, written in the command's working folder."""

    @cascade_ingestion(table_name="people", unique_key="id", iceberg_schema=SCHEMA, group="crm")
    def people(partition_date: str):  # type: ignore[no-untyped-def]
        return dlt.resource([{"id": i, "name": f"person {i}"} for i in range(50)], name="people")

    cascade.run(people, "2024-05-01", config=cascade.load_config())
    return "crm.people"


def fingerprint(identifier: str) -> tuple[int | None, list[tuple[str, str]]]:
    """The table's head snapshot and a hash of every data file it reads."""
    table = open_catalog(cascade.load_config()).load_table(identifier)
    files = []
    for task in table.scan().plan_files():
        with table.io.new_input(task.file.file_path).open() as stream:
            files.append((task.file.file_path, hashlib.sha256(stream.read()).hexdigest()))
    head = table.current_snapshot()
    return (head.snapshot_id if head else None), sorted(files)


def a_data_file(identifier: str) -> str:
    table = open_catalog(cascade.load_config()).load_table(identifier)
    path = next(iter(table.scan().plan_files())).file.file_path
    return path.removeprefix("file://")


def test_query_reads_the_tables(cli, people: str) -> None:  # type: ignore[no-untyped-def]
    done = cli("query", "select count(*) as n, max(name) as last from crm.people where id >= 40", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {"n": 10, "last": "person 49"}
    joined = cli("query", "select count(*) as n from crm.people a join crm.people b on a.id = b.id", "--json")
    assert json.loads(joined.stdout) == {"n": 50}


def test_tables_are_scanned_not_loaded(people: str) -> None:
    source = table_source(open_catalog(cascade.load_config()).load_table(people))
    assert isinstance(source, ds.Dataset)  # DuckDB pushes filters and projections into the scan


REFUSED = {
    "copy-over-a-data-file": "COPY (SELECT 1 AS id, 'bogus' AS name) TO '{data_file}' (FORMAT parquet)",
    "copy-elsewhere": "COPY (SELECT * FROM crm.people) TO '{tmp}/out.csv'",
    "export": "EXPORT DATABASE '{tmp}/export'",
    "read-text": "SELECT * FROM read_text('/etc/hostname')",
    "read-parquet": "SELECT * FROM read_parquet('{data_file}')",
    "file-as-table": "SELECT * FROM '{data_file}'",
    "attach-sqlite": "ATTACH '{tmp}/x.db' AS x (TYPE sqlite)",
    "attach-memory": "ATTACH ':memory:' AS scratch",
    "install": "INSTALL sqlite",
    "load": "LOAD httpfs",
    "unlock": "SET enable_external_access = true",
    "second-statement": "SELECT 1; COPY (SELECT 1) TO '{tmp}/x.parquet'",
    "create": "CREATE TABLE crm.copy AS SELECT * FROM crm.people",
    "drop-view": "DROP VIEW crm.people",
    "python-object": "SELECT * FROM people",
}


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
def test_refused_and_the_table_is_unchanged(cli, people: str, tmp_path: Path, sql: str) -> None:  # type: ignore[no-untyped-def]
    before = fingerprint(people)
    done = cli("query", sql.format(data_file=a_data_file(people), tmp=tmp_path))
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert fingerprint(people) == before
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "export").exists()
    still = cli("query", "select count(*) as n from crm.people", "--json")
    assert json.loads(still.stdout) == {"n": 50}
