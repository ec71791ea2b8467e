"""``cascade.pyiceberg_compat``: each use of pyiceberg's private API still does what Cascade relies on.

Runs on the lowest and the latest supported pyiceberg (``nox -s tests_lowest`` runs ``tests/unit``),
so a pyiceberg release that renames or changes one of them fails here, by name.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.update import AssertRefSnapshotId, AssertTableUUID
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import ListType, LongType, NestedField, StringType, StructType

from cascade.pyiceberg_compat import commit_once, move_branch, require_ref_heads, staged_updates, write_data_files
from cascade.snapshots import commit_overwrite

SCHEMA = Schema(NestedField(1, "k", StringType(), required=False), NestedField(2, "p", LongType(), required=False))
BY_P = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="p"))


@pytest.fixture
def table(tmp_path: Path) -> Table:
    catalog = SqlCatalog("compat", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}/warehouse")
    catalog.create_namespace("lake")
    return catalog.create_table("lake.t", SCHEMA, partition_spec=BY_P)


def rows(*pairs: tuple[str, int]) -> pa.Table:
    return pa.table({"k": [k for k, _ in pairs], "p": [p for _, p in pairs]})


def commit_rows(table: Table, *pairs: tuple[str, int], branch: str = "main") -> int:
    files = write_data_files(table.metadata, rows(*pairs), table.io)
    return commit_overwrite(table, branch=branch, deleted=(), added=files, snapshot_properties={})


def test_write_data_files_writes_one_file_per_partition_and_commits_nothing(table: Table) -> None:
    files = write_data_files(table.metadata, rows(("a", 1), ("b", 1), ("c", 2)), table.io)
    assert sorted((tuple(f.partition), f.record_count) for f in files) == [((1,), 2), ((2,), 1)]  # type: ignore[arg-type]
    assert all(table.io.new_input(f.file_path).exists() for f in files)
    assert table.refresh().current_snapshot() is None


def column_dictionaries(path: str) -> dict[str, bool]:
    metadata = pq.read_metadata(path.removeprefix("file://"))
    chunks = [metadata.row_group(0).column(i) for i in range(metadata.num_columns)]
    return {chunk.path_in_schema: chunk.has_dictionary_page for chunk in chunks}


@pytest.mark.parametrize("partitioned", [False, True], ids=["unpartitioned", "partitioned"])
def test_a_one_column_key_is_written_without_a_dictionary_and_the_rest_as_pyiceberg_writes(
    tmp_path: Path, partitioned: bool
) -> None:
    """The column name needs sanitizing in Parquet ("key-id"), and the table has nested columns."""
    catalog = SqlCatalog("compat", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}/warehouse")
    catalog.create_namespace("lake")
    schema = Schema(
        NestedField(1, "key-id", LongType(), required=False),
        NestedField(2, "p", LongType(), required=False),
        NestedField(3, "s", StructType(NestedField(4, "x", StringType(), required=False)), required=False),
        NestedField(5, "l", ListType(6, StringType(), element_required=False), required=False),
    )
    table = catalog.create_table("lake.t", schema, partition_spec=BY_P if partitioned else PartitionSpec())
    given = pa.table(
        {
            "key-id": pa.array(range(6), pa.int64()),
            "p": pa.array([1, 1, 2, 2, 2, 2], pa.int64()),
            "s": [{"x": "a"}, {"x": None}, None, {"x": "a"}, {"x": "é"}, {"x": "a"}],
            "l": [["q"], [], None, ["q", None], ["q"], ["r"]],
        }
    )
    ours = sorted(write_data_files(table.metadata, given, table.io, ("key-id",)), key=lambda f: str(f.partition))
    theirs = sorted(write_data_files(table.metadata, given, table.io), key=lambda f: str(f.partition))

    assert [column_dictionaries(f.file_path) for f in ours] == [
        {"key_x2Did": False, "p": True, "s.x": True, "l.list.element": True}
    ] * len(ours)
    assert all(column_dictionaries(f.file_path)["key_x2Did"] for f in theirs)
    statistics = ("partition", "record_count", "value_counts", "null_value_counts", "lower_bounds", "upper_bounds")
    for mine, pyicebergs in zip(ours, theirs, strict=True):
        assert [getattr(mine, s) for s in statistics] == [getattr(pyicebergs, s) for s in statistics]
    commit_overwrite(table, branch="main", deleted=(), added=ours, snapshot_properties={})
    assert table.refresh().scan().to_arrow().sort_by("key-id").to_pylist() == given.to_pylist()


def test_an_empty_target_file_size_is_the_default_as_pyiceberg_reads_it(table: Table) -> None:
    table.transaction().set_properties({"write.target-file-size-bytes": ""}).commit_transaction()
    (written,) = write_data_files(table.refresh().metadata, rows(("a", 1)), table.io, ("k",))
    assert written.record_count == 1


def test_a_key_of_more_than_one_column_is_written_as_pyiceberg_writes(table: Table) -> None:
    (written,) = write_data_files(table.metadata, rows(("a", 1)), table.io, ("k", "p"))
    assert column_dictionaries(written.file_path) == {"k": True, "p": True}


def test_commit_overwrite_adds_and_replaces_files_in_one_snapshot(table: Table) -> None:
    first = commit_rows(table, ("a", 1))
    old = list(table.refresh().scan().plan_files())
    added = write_data_files(table.metadata, rows(("a2", 1)), table.io)
    second = commit_overwrite(
        table.refresh(), branch="main", deleted=[task.file for task in old], added=added, snapshot_properties={}
    )
    fresh = table.refresh()
    assert fresh.snapshot_by_id(second).parent_snapshot_id == first  # type: ignore[union-attr]
    assert fresh.scan().to_arrow().column("k").to_pylist() == ["a2"]


def test_commit_once_applies_staged_updates_when_every_requirement_holds(table: Table) -> None:
    transaction = table.transaction()
    transaction.set_properties({"cascade.test": "yes"})
    commit_once(table, staged_updates(transaction), [AssertTableUUID(uuid=table.metadata.table_uuid)])
    assert table.refresh().properties["cascade.test"] == "yes"


def test_commit_once_applies_nothing_when_a_requirement_fails(table: Table) -> None:
    head = commit_rows(table, ("a", 1))
    transaction = table.refresh().transaction()
    transaction.set_properties({"cascade.test": "yes"})
    stale = AssertRefSnapshotId(snapshot_id=head + 1, ref="main")  # type: ignore[call-arg]
    with pytest.raises(CommitFailedException):
        commit_once(table, staged_updates(transaction), [stale])
    assert "cascade.test" not in table.refresh().properties


def test_require_ref_heads_makes_a_transaction_fail_when_any_branch_moved(table: Table) -> None:
    head = commit_rows(table, ("a", 1))
    move_branch(table.refresh(), "dev", head, expected=None)
    transaction = table.refresh().transaction()
    transaction.set_properties({"cascade.test": "yes"})
    require_ref_heads(transaction, {"main": head, "dev": head})
    commit_rows(table.refresh(), ("b", 2), branch="dev")  # dev moves after the check
    with pytest.raises(CommitFailedException):
        transaction.commit_transaction()
    assert "cascade.test" not in table.refresh().properties


def test_move_branch_creates_and_fast_forwards_only_from_the_expected_head(table: Table) -> None:
    first = commit_rows(table, ("a", 1))
    move_branch(table.refresh(), "dev", first, expected=None)
    second = commit_rows(table.refresh(), ("b", 2), branch="dev")
    with pytest.raises(CommitFailedException):
        move_branch(table.refresh(), "main", second, expected=second)  # main is still at first
    move_branch(table.refresh(), "main", second, expected=first)
    assert table.refresh().snapshot_by_name("main").snapshot_id == second  # type: ignore[union-attr]
    with pytest.raises(CommitFailedException):
        move_branch(table.refresh(), "dev", first, expected=None)  # dev exists
