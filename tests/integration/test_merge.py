"""``cascade.merge_into`` against a dict model, on a real SQLite catalog.

The model: a dict keyed by the unique key. Within a batch the last record wins; a stored key
is replaced unless its non-metadata columns are equal (then it keeps its stored
``_cascade_ingested_at``); a batch that changes nothing commits nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyiceberg.manifest
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import ResolveError
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DateType, DoubleType, LongType, NestedField, StringType, TimestamptzType

from cascade import INGESTED_AT, MergeOutcome, append_into, merge_into
from cascade.catalog import initialize_main
from cascade.errors import MergeConflictError, NullKeyError, SchemaMismatchError
from cascade.maintenance import expire_snapshots
from cascade.merge.batch import prepare_batch
from cascade.merge.chunked import STAGING_GRACE, staging_branch_name
from cascade.merge.commit import CarriedFiles
from cascade.merge.plan import PartitionReplace
from cascade.merge.pruning import candidate_files
from tests.conftest import examples

SCHEMA = Schema(
    NestedField(1, "k", StringType(), required=False),
    NestedField(2, "p", LongType(), required=False),
    NestedField(3, "v", LongType(), required=False),
    NestedField(4, "note", StringType(), required=False),
    NestedField(5, INGESTED_AT, TimestamptzType(), required=False),
)
BY_P = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="p"))
_counter = itertools.count()


def new_catalog(folder: Path) -> SqlCatalog:
    (folder / "wh").mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog("t", uri=f"sqlite:///{folder / 'c.db'}", warehouse=(folder / "wh").as_uri())
    catalog.create_namespace("n")
    return catalog


def new_table(
    catalog: SqlCatalog, spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC, small_files: bool = False
) -> Table:
    props = {"write.target-file-size-bytes": "2000"} if small_files else {}
    return catalog.create_table(f"n.t{next(_counter)}", schema=SCHEMA, partition_spec=spec, properties=props)


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return new_catalog(tmp_path)


def stamp(step: int) -> dt.datetime:
    return dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=step)


def batch(records: list[tuple[str, int, int | None]], step: int, note: str = "n") -> pa.Table:
    return pa.table(
        {
            "k": pa.array([r[0] for r in records], pa.string()),
            "p": pa.array([r[1] for r in records], pa.int64()),
            "v": pa.array([r[2] for r in records], pa.int64()),
            "note": pa.array([note] * len(records), pa.string()),
            INGESTED_AT: pa.array([stamp(step)] * len(records), pa.timestamp("us", tz="UTC")),
        }
    )


def table_state(table: Table, branch: str = "main") -> dict[str, tuple[int, int | None, dt.datetime]]:
    snapshot = table.refresh().snapshot_by_name(branch)
    if snapshot is None:
        return {}
    rows = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow().to_pylist()
    state = {r["k"]: (r["p"], r["v"], r[INGESTED_AT]) for r in rows}
    assert len(state) == len(rows), "two rows for one key"
    return state


@dataclass
class Model:
    rows: dict[str, tuple[int, int | None, dt.datetime]]

    def apply(self, records: list[tuple[str, int, int | None]], step: int) -> tuple[int, int, int, int]:
        last = {k: (p, v) for k, p, v in records}
        inserted = updated = unchanged = 0
        for k, (p, v) in last.items():
            if k not in self.rows:
                inserted += 1
            elif self.rows[k][:2] == (p, v):
                unchanged += 1
                continue
            else:
                updated += 1
            self.rows[k] = (p, v, stamp(step))
        return inserted, updated, unchanged, len(records) - len(last)


keys = st.sampled_from([f"key-{i:02d}" for i in range(24)])
record = st.tuples(keys, st.integers(0, 3), st.one_of(st.none(), st.integers(0, 2)))
batches = st.lists(st.lists(record, min_size=0, max_size=30), min_size=1, max_size=5)
layouts = st.sampled_from(["unpartitioned", "partitioned-moving", "partitioned-stable", "small-files"])


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=batches, layout=layouts)
def test_merge_matches_the_dict_model(steps: list[list[tuple[str, int, int | None]]], layout: str) -> None:
    if layout == "partitioned-stable":  # stable: a key keeps the partition of its first appearance
        first_p: dict[str, int] = {}
        steps = [[(k, first_p.setdefault(k, p), v) for k, p, v in s] for s in steps]
    with tempfile.TemporaryDirectory() as folder:
        catalog = new_catalog(Path(folder))
        spec = UNPARTITIONED_PARTITION_SPEC if layout == "unpartitioned" else BY_P
        table = new_table(catalog, spec, small_files=layout == "small-files")
        model = Model({})
        for step, records in enumerate(steps):
            before = table.refresh().metadata.current_snapshot_id
            outcome = merge_into(table, batch(records, step), "k", stable_partitions=layout == "partitioned-stable")
            expected = model.apply(records, step)
            got = (outcome.rows_inserted, outcome.rows_updated, outcome.rows_unchanged, outcome.rows_deduplicated)
            assert got == expected
            assert table_state(table) == model.rows
            if expected[0] + expected[1] == 0:
                assert table.metadata.current_snapshot_id == before  # nothing changed: no snapshot
                assert outcome.commit_attempts == 0
            else:
                assert table.metadata.current_snapshot_id != before
                assert table.snapshot_by_id(table.metadata.current_snapshot_id).parent_snapshot_id == before
                assert outcome.snapshot_id == table.metadata.current_snapshot_id


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 2), st.integers(0, 3)), max_size=12),
        min_size=1,
        max_size=4,
    )
)
def test_composite_key_matches_the_model(steps: list[list[tuple[str, int, int]]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        table = new_table(new_catalog(Path(folder)), BY_P)  # p is in the key: partition pruning is exact
        model: dict[tuple[str, int], int] = {}
        for step, records in enumerate(steps):
            merge_into(table, batch(records, step), ("k", "p"))
            model.update({(k, p): v for k, p, v in records})
            rows = table.refresh().scan().to_arrow().to_pylist() if table.current_snapshot() else []
            assert {(r["k"], r["p"]): r["v"] for r in rows} == model
            assert len(rows) == len(model)


def test_one_merge_one_snapshot_and_noop_adds_none(catalog: SqlCatalog) -> None:
    table = new_table(catalog, BY_P)
    first = merge_into(table, batch([("a", 0, 1), ("b", 1, 2)], 0), "k")
    assert len(table.refresh().snapshots()) == 1
    second = merge_into(table, batch([("a", 0, 5), ("c", 2, 3)], 1), "k")
    assert len(table.refresh().snapshots()) == 2
    noop = merge_into(table, batch([("a", 0, 5), ("c", 2, 3)], 2), "k")
    assert len(table.refresh().snapshots()) == 2
    assert (first.rows_inserted, second.rows_inserted, second.rows_updated) == (2, 1, 1)
    assert (noop.rows_unchanged, noop.commit_attempts, noop.files_added) == (2, 0, 0)
    assert noop.snapshot_id == second.snapshot_id


def test_failure_before_commit_leaves_snapshot(catalog: SqlCatalog) -> None:
    table = new_table(catalog, BY_P)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    before = table.refresh().metadata.current_snapshot_id

    def explode(plan: object) -> None:
        raise RuntimeError("injected failure before commit")

    with pytest.raises(RuntimeError, match="injected failure"):
        merge_into(table, batch([("a", 0, 2), ("b", 1, 1)], 1), "k", before_commit=explode)
    assert table.refresh().metadata.current_snapshot_id == before
    assert table_state(table) == {"a": (0, 1, stamp(0))}


@pytest.mark.parametrize("chunk_rows", [None, 1], ids=["whole", "chunked"])
def test_a_merge_onto_a_new_branch_starts_it_from_main(catalog: SqlCatalog, chunk_rows: int | None) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("a", 0, 1), ("b", 0, 1)], 0), "k")
    merge_into(table, batch([("b", 0, 2), ("c", 0, 2)], 1), "k", branch="dev", chunk_rows=chunk_rows)
    assert table_state(table, "dev") == {"a": (0, 1, stamp(0)), "b": (0, 2, stamp(1)), "c": (0, 2, stamp(1))}
    assert table_state(table) == {"a": (0, 1, stamp(0)), "b": (0, 1, stamp(0))}


def test_branch_merge_leaves_main(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    main = table.refresh().metadata.current_snapshot_id
    table.manage_snapshots().create_branch(main, "dev").commit()
    merge_into(table, batch([("a", 0, 9), ("b", 0, 2)], 1), "k", branch="dev")
    assert table_state(table) == {"a": (0, 1, stamp(0))}
    assert table_state(table, "dev") == {"a": (0, 9, stamp(1)), "b": (0, 2, stamp(1))}


def test_pruning_reads_only_touched_partitions(catalog: SqlCatalog) -> None:
    table = new_table(catalog, BY_P)
    for p in range(30):  # 30 partitions, one commit (and file) each
        merge_into(table, batch([(f"p{p}-{i}", p, i) for i in range(200)], 0), ("k", "p"))
    files = {f.file.file_path: f.file for f in table.refresh().scan().plan_files()}
    touched = {path: f for path, f in files.items() if f.partition[0] in (3, 17)}
    assert len(files) == 30
    # p17-{i}-new sorts inside p17's key range, so its file must be probed (key column only)
    update = [(f"p3-{i}", 3, -1) for i in range(50)] + [(f"p17-{i}-new", 17, 1) for i in range(50)]
    outcome = merge_into(table, batch(update, 1), ("k", "p"))
    assert (outcome.rows_updated, outcome.rows_inserted) == (50, 50)
    assert outcome.files_considered == 2
    assert outcome.files_read == 2  # p17's file is probed on its keys only; p3's read whole
    assert outcome.files_rewritten == 1
    assert 0 < outcome.bytes_read <= sum(f.file_size_in_bytes for f in touched.values())


def test_key_range_pruning_skips_files_without_batch_keys(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    for chunk in range(10):  # unpartitioned; each file holds a disjoint key range
        merge_into(table, batch([(f"k{chunk}-{i:03d}", 0, i) for i in range(100)], 0), "k")
    outcome = merge_into(table, batch([("k4-007", 0, -7)], 1), "k")
    assert (outcome.files_considered, outcome.files_read, outcome.files_rewritten) == (1, 1, 1)
    assert table_state(table)["k4-007"][:2] == (0, -7)


def test_moved_key_leaves_no_old_row(catalog: SqlCatalog) -> None:
    table = new_table(catalog, BY_P)
    merge_into(table, batch([("a", 0, 1), ("b", 0, 1)], 0), "k")
    outcome = merge_into(table, batch([("a", 3, 1)], 1), "k")  # partition source not in key: not stable
    assert outcome.rows_updated == 1
    assert table_state(table) == {"a": (3, 1, stamp(1)), "b": (0, 1, stamp(0))}


def test_a_float_key_column_is_refused(catalog: SqlCatalog) -> None:
    schema = Schema(NestedField(1, "k", DoubleType(), required=True), NestedField(2, "v", LongType()))
    catalog.create_namespace_if_not_exists("floaty")
    table = catalog.create_table("floaty.t", schema=schema)
    with pytest.raises(SchemaMismatchError, match=r"\['k'\].*float or double"):
        merge_into(table, pa.table({"k": [0.0, -0.0], "v": [1, 2]}), "k")
    assert table.refresh().current_snapshot() is None


def test_null_keys_and_extra_columns_are_refused(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    with pytest.raises(NullKeyError, match="null unique key column 'k'"):
        merge_into(table, batch([(None, 0, 1)], 0), "k")  # type: ignore[list-item]
    with pytest.raises(SchemaMismatchError, match=r"\['extra'\] are not in the table schema"):
        merge_into(table, batch([("a", 0, 1)], 0).append_column("extra", pa.array([1])), "k")
    assert table.refresh().current_snapshot() is None


def test_fewer_columns_fill_nulls(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    merge_into(table, pa.table({"k": ["a"], "v": pa.array([1], pa.int64())}), "k")
    assert table.refresh().scan().to_arrow().to_pylist() == [
        {"k": "a", "p": None, "v": 1, "note": None, INGESTED_AT: None}
    ]


def test_keys_compare_after_casting(catalog: SqlCatalog) -> None:
    schema = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "v", StringType(), required=False))
    table = catalog.create_table("n.cast", schema=schema)
    merge_into(table, pa.table({"id": pa.array([1, 2], pa.int32()), "v": ["a", "b"]}), "id")
    outcome = merge_into(table, pa.table({"id": pa.array([2, 3], pa.int16()), "v": ["b2", "c"]}), "id")
    assert (outcome.rows_updated, outcome.rows_inserted) == (1, 1)
    assert sorted(table.refresh().scan().to_arrow().to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "v": "a"},
        {"id": 2, "v": "b2"},
        {"id": 3, "v": "c"},
    ]


def test_record_batch_reader_is_accepted(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    data = batch([("a", 0, 1), ("b", 0, 2)], 0)
    outcome = merge_into(table, pa.RecordBatchReader.from_batches(data.schema, data.to_batches()), "k")
    assert outcome.rows_inserted == 2


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.lists(st.tuples(keys, st.integers(0, 3), st.integers(0, 2)), max_size=20),
    update=st.lists(st.tuples(keys, st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=20),
)
def test_same_result_as_pyiceberg_upsert(initial: list, update: list) -> None:
    with tempfile.TemporaryDirectory() as folder:
        catalog = new_catalog(Path(folder))
        ours, theirs = new_table(catalog, BY_P), new_table(catalog, BY_P)
        seed = batch(list({k: (k, p, v) for k, p, v in initial}.values()), 0)
        if seed.num_rows:
            ours.append(seed)
            theirs.append(seed)
        deduplicated = batch(list({k: (k, p, v) for k, p, v in update}.values()), 1)
        merge_into(ours, batch(update, 1), "k")
        theirs.upsert(deduplicated, join_cols=["k"])

        def data(table: Table) -> list[tuple]:
            rows = table.refresh().scan().to_arrow().drop_columns([INGESTED_AT]).to_pylist()
            return sorted((r["k"], r["p"], r["v"]) for r in rows)

        assert data(ours) == data(theirs)


# --- batches larger than memory: chunks staged on a branch, published at once -----------------------


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=batches,
    chunk_rows=st.integers(1, 7),
    layout=st.sampled_from(["unpartitioned", "partitioned-moving"]),
    distinct=st.booleans(),
)
def test_chunked_merge_matches_the_dict_model(
    steps: list[list[tuple[str, int, int | None]]], chunk_rows: int, layout: str, distinct: bool
) -> None:
    """``distinct``: each batch's keys made distinct (the last record of a key kept, as the runner
    does before streaming) and vouched for, so chunks skip the files earlier chunks only inserted."""
    with tempfile.TemporaryDirectory() as folder:
        table = new_table(
            new_catalog(Path(folder)), UNPARTITIONED_PARTITION_SPEC if layout == "unpartitioned" else BY_P
        )
        model = Model({})
        for step, records in enumerate(steps):
            if distinct:
                records = list({k: (k, p, v) for k, p, v in records}.values())
            data = batch(records, step)
            reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=3))
            outcome = merge_into(table, reader, "k", chunk_rows=chunk_rows, keys_distinct=distinct)
            model.apply(records, step)
            # data as the dict model; the ingested-at stamp may be newer for a key that changed in
            # one chunk and changed back in a later one (documented on merge_in_chunks)
            assert {k: v[:2] for k, v in table_state(table).items()} == {k: v[:2] for k, v in model.rows.items()}
            assert outcome.rows_in == len(records)
            assert [name for name in table.refresh().metadata.refs if name.startswith("cascade-merge-")] == []


def test_chunks_of_distinct_keys_do_not_read_what_earlier_chunks_inserted(catalog: SqlCatalog) -> None:
    """Random keys give every file a key range overlapping every later chunk's: without knowing
    the chunks' keys are disjoint, chunk n would read the files of all n - 1 chunks before it."""
    table = new_table(catalog)
    merge_into(table, batch([("key-0500", 0, 1), ("key-2000", 0, 1)], 0), "k")  # stored before the merge
    keys = [f"key-{i:04d}" for i in range(1000)]
    random.Random(7).shuffle(keys)
    records = [(k, 0, 2) for k in keys]
    outcome = merge_into(table, batch(records, 1), "k", chunk_rows=100, keys_distinct=True)
    assert (outcome.rows_inserted, outcome.rows_updated) == (999, 1)
    # each of the 10 chunks considers one file: the stored one, or the file that replaced it when
    # the chunk holding key-0500 rewrote it (that chunk's files also hold key-2000, so they are read)
    assert outcome.files_considered == 10
    assert table_state(table) == {**{k: (0, 2, stamp(1)) for k in keys}, "key-2000": (0, 1, stamp(0))}


def test_chunks_planned_against_one_head_read_its_manifest_list_once(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Insert-only chunks are carried, not committed, so every chunk plans against the same head."""
    table = new_table(catalog)
    merge_into(table, batch([("stored", 0, 1)], 0), "k")
    head = table.refresh().current_snapshot()
    assert head is not None
    reads = count_manifest_list_reads(monkeypatch)
    merge_into(table, batch([(f"k{i:03d}", 0, 2) for i in range(100)], 1), "k", chunk_rows=10, keys_distinct=True)
    assert reads[head.manifest_list] <= 3  # planned once for all ten chunks (was ten times); the commit reads it too


def test_a_head_without_data_files_is_planned_without_reading_manifests(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = initialize_main(new_table(catalog))
    head = table.current_snapshot()
    assert head is not None
    reads = count_manifest_list_reads(monkeypatch)
    assert candidate_files(table, head, batch([("a", 0, 1)], 0), ("k",), stable_partitions=False) == []
    assert sum(reads.values()) == 0


def count_manifest_list_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count pyiceberg's reads of each manifest list from now on (the real read still happens)."""
    reads: Counter[str] = Counter()
    real = pyiceberg.manifest.read_manifest_list

    def counted(input_file: Any) -> Any:
        reads[input_file.location] += 1
        return real(input_file)

    monkeypatch.setattr(pyiceberg.manifest, "read_manifest_list", counted)
    return reads


def test_a_chunked_merge_drops_the_staging_branch_a_dead_merge_left(catalog: SqlCatalog) -> None:
    """A merge killed mid-way (kill -9) leaves its staging branch; a live one is younger than the grace."""
    table = new_table(catalog)
    merge_into(table, batch([("stored", 0, 1)], 0), "k")
    head = table.refresh().current_snapshot()
    assert head is not None
    now = dt.datetime.now(dt.UTC)
    dead = staging_branch_name(int((now - STAGING_GRACE - dt.timedelta(minutes=1)).timestamp() * 1000))
    live = staging_branch_name(int(now.timestamp() * 1000))
    for name in (dead, live):
        table.manage_snapshots().create_branch(head.snapshot_id, name).commit()
    merge_into(table, batch([(f"k{i}", 0, 2) for i in range(20)], 1), "k", chunk_rows=5, keys_distinct=True)
    assert sorted(table.refresh().metadata.refs) == sorted(["main", live])
    assert len(table_state(table)) == 21


def another_writer_inside_next_commits(
    catalog: SqlCatalog,
    table: Table,
    monkeypatch: pytest.MonkeyPatch,
    times: int,
    when: Callable[[TableMetadata], bool] = lambda metadata: True,
) -> list[str]:
    """Land a real commit through a second handle inside the catalog's window of each of the next
    ``times`` commits ``when`` picks by the metadata they write (after the catalog read the table,
    before it swaps the metadata pointer), so the catalog refuses them. The window is pyiceberg's
    own (``SqlCatalog._write_metadata`` runs in it); a race cannot be timed into it on purpose."""
    other = catalog.load_table(table.name())
    landed: list[str] = []
    busy: list[bool] = []
    write_metadata = catalog._write_metadata

    def then_another_commit(*args: Any, **kwargs: Any) -> None:
        write_metadata(*args, **kwargs)
        if busy or len(landed) >= times or not when(kwargs.get("metadata") or args[0]):
            return  # the other writer's own commit, or one not picked
        busy.append(True)
        landed.append(f"other{len(landed)}")
        merge_into(other.refresh(), batch([(landed[-1], 0, 1)], 0), "k")
        busy.clear()

    monkeypatch.setattr(catalog, "_write_metadata", then_another_commit)
    return landed


def test_a_commit_landing_as_the_staging_branch_forks_is_waited_out(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork is the chunked merge's first commit. Nothing is staged before it, so a fork the
    catalog refused is tried again at the new head."""
    table = new_table(catalog)
    merge_into(table, batch([("stored", 0, 1)], 0), "k")
    landed = another_writer_inside_next_commits(catalog, table, monkeypatch, times=2)
    records = [(f"k{i}", 0, 2) for i in range(10)]
    outcome = merge_into(table, batch(records, 1), "k", chunk_rows=5, keys_distinct=True)
    assert landed == ["other0", "other1"] and outcome.rows_inserted == 10
    assert sorted(table_state(table)) == sorted(["stored", *landed, *(k for k, _, _ in records)])
    assert sorted(table.refresh().metadata.refs) == ["main"]


def test_a_staging_fork_refused_at_every_attempt_is_a_retryable_conflict(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("stored", 0, 1)], 0), "k")
    landed = another_writer_inside_next_commits(catalog, table, monkeypatch, times=3)
    with pytest.raises(MergeConflictError, match=r"staging branch 3 times.*try again") as caught:
        merge_into(table, batch([(f"k{i}", 0, 2) for i in range(10)], 1), "k", chunk_rows=5, max_attempts=3)
    assert caught.value.transient
    assert sorted(table_state(table)) == sorted(["stored", *landed]) and len(landed) == 3
    assert sorted(table.refresh().metadata.refs) == ["main"]


def test_a_staging_branch_whose_removal_lost_a_race_is_removed(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("stored", 0, 1)], 0), "k")

    def removes_the_staging_branch(metadata: TableMetadata) -> bool:
        return not any(name.startswith("cascade-merge-") for name in metadata.refs)

    landed = another_writer_inside_next_commits(catalog, table, monkeypatch, times=1, when=removes_the_staging_branch)
    records = [(f"k{i}", 0, 2) for i in range(10)]
    merge_into(table, batch(records, 1), "k", chunk_rows=5, keys_distinct=True)
    assert landed == ["other0"] and sorted(table.refresh().metadata.refs) == ["main"]
    assert sorted(table_state(table)) == sorted(["stored", *landed, *(k for k, _, _ in records)])


def test_maintenance_drops_abandoned_staging_branches(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("stored", 0, 1)], 0), "k")
    head = table.refresh().current_snapshot()
    assert head is not None
    table.manage_snapshots().create_branch(head.snapshot_id, "cascade-merge-0123456789ab").commit()  # the old naming
    table.manage_snapshots().create_branch(head.snapshot_id, "cascade-audit-kept-for-inspection").commit()
    later = dt.datetime.now(dt.UTC) + STAGING_GRACE + dt.timedelta(minutes=1)
    expire_snapshots(table, older_than=dt.timedelta(days=7), retain_last=1, now=later, dry_run=True)
    assert "cascade-merge-0123456789ab" in table.refresh().metadata.refs  # a dry run changes nothing
    expire_snapshots(table, older_than=dt.timedelta(days=7), retain_last=1, now=later)
    assert sorted(table.refresh().metadata.refs) == ["cascade-audit-kept-for-inspection", "main"]


def test_a_chunk_that_rewrote_a_stored_file_is_read_by_later_chunks(catalog: SqlCatalog) -> None:
    """The first chunk rewrites the file holding a and b: its new file holds b too, which the
    second chunk updates, so that file must not be skipped as an earlier chunk's own."""
    table = new_table(catalog)
    merge_into(table, batch([("a", 0, 1), ("b", 0, 1)], 0), "k")
    outcome = merge_into(table, batch([("a", 0, 2), ("b", 0, 2)], 1), "k", chunk_rows=1, keys_distinct=True)
    assert (outcome.rows_inserted, outcome.rows_updated) == (0, 2)
    assert table_state(table) == {"a": (0, 2, stamp(1)), "b": (0, 2, stamp(1))}


def test_chunked_merge_publishes_once(catalog: SqlCatalog) -> None:
    table = new_table(catalog, BY_P)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    before = table.refresh().metadata.current_snapshot_id
    seen_by_readers: list[int | None] = []

    def reader_view(plan: object) -> None:  # called before each chunk's commit on the staging branch
        seen_by_readers.append(table.refresh().metadata.current_snapshot_id)

    records = [(f"k{i}", i % 3, i) for i in range(10)]
    outcome = merge_into(table, batch(records, 1), "k", chunk_rows=3, before_commit=reader_view)
    assert seen_by_readers == [before] * 4  # main did not move while the 4 chunks were staged
    assert outcome.snapshot_id == table.refresh().metadata.current_snapshot_id != before
    assert len(table_state(table)) == 11


def history(table: Table, branch: str = "main") -> list[int]:
    """The branch's snapshot ids, head first."""
    fresh = table.refresh()
    snapshot, found = fresh.snapshot_by_name(branch), []
    while snapshot is not None:
        found.append(snapshot.snapshot_id)
        snapshot = fresh.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return found


def test_a_streamed_day_whose_chunks_update_is_one_snapshot_in_the_branch_history(catalog: SqlCatalog) -> None:
    """Each chunk that updates commits on the private branch; the target gains one snapshot holding
    them all, so no reader of its history (time travel included) sees part of the day."""
    table = new_table(catalog)
    merge_into(table, batch([(f"k{i}", 0, 1) for i in range(9)], 0), "k")
    before = history(table)
    day = batch([*((f"k{i}", 0, 2) for i in range(9)), ("new", 0, 2)], 1)
    outcome = merge_into(table, day, "k", chunk_rows=3)  # four chunks, three of them rewrite stored files
    assert history(table)[1:] == before  # one snapshot, its parent the head the day started from
    expected = {**{f"k{i}": (0, 2, stamp(1)) for i in range(9)}, "new": (0, 2, stamp(1))}
    assert table_state(table) == expected
    assert (outcome.rows_updated, outcome.rows_inserted, outcome.snapshot_id) == (9, 1, history(table)[0])
    assert list(table.refresh().metadata.refs) == ["main"]
    merge_into(table, batch([("k0", 0, 3)], 2), "k")  # the next merge builds on the published snapshot
    assert table_state(table) == {**expected, "k0": (0, 3, stamp(2))}


def test_a_streamed_day_onto_a_new_branch_is_one_snapshot_above_its_fork(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    merge_into(table, batch([(f"k{i}", 0, 1) for i in range(9)], 0), "k")
    fork = history(table)
    merge_into(table, batch([(f"k{i}", 0, 2) for i in range(9)], 1), "k", chunk_rows=3, branch="dev")
    assert history(table, "dev")[1:] == fork and history(table) == fork
    assert table_state(table, "dev") == {f"k{i}": (0, 2, stamp(1)) for i in range(9)}
    assert sorted(table.refresh().metadata.refs) == ["dev", "main"]


def test_a_commit_on_another_branch_just_before_a_streamed_publish_is_no_conflict(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish was planned on metadata the other commit made stale (pyiceberg refuses it with a
    ValueError about sequence numbers); the target did not move, so it is planned again and lands.
    The race window cannot be hit on purpose, so the other writer's (real) commit is made from
    inside the publish's own commit call."""
    import cascade.merge.engine as engine

    table = new_table(catalog)
    merge_into(table, batch([(f"k{i}", 0, 1) for i in range(9)], 0), "k")
    other = catalog.load_table(table.name())
    other.manage_snapshots().create_branch(other.current_snapshot().snapshot_id, "dev").commit()  # type: ignore[union-attr]
    publish, raced = engine.commit_overwrite, []

    def commit_overwrite(target: Table, **kwargs: Any) -> int:
        if kwargs["branch"] == "main" and not raced:
            raced.append(merge_into(other.refresh(), batch([("x", 0, 7)], 5), "k", branch="dev"))
        return publish(target, **kwargs)

    monkeypatch.setattr(engine, "commit_overwrite", commit_overwrite)
    before = history(table)
    merge_into(table, batch([*((f"k{i}", 0, 2) for i in range(9)), ("new", 0, 2)], 1), "k", chunk_rows=3)
    assert raced and history(table)[1:] == before
    assert table_state(table) == {**{f"k{i}": (0, 2, stamp(1)) for i in range(9)}, "new": (0, 2, stamp(1))}
    assert table_state(table, "dev")["x"] == (0, 7, stamp(5))
    assert sorted(table.refresh().metadata.refs) == ["dev", "main"]


@dataclass
class OtherWriter:
    """A ``before_commit`` hook that lands another writer's merge of ``records`` on main the first
    time a chunk of the chunked merge commits (its staging branch forked before)."""

    table: Table  # the other writer's own handle
    records: list[tuple[str, int, int | None]]
    step: int
    landed: list[MergeOutcome] = field(default_factory=list)

    def __call__(self, plan: object) -> None:
        if not self.landed:
            self.landed.append(merge_into(self.table.refresh(), batch(self.records, self.step), "k"))


def landing_once(
    catalog: SqlCatalog, table: Table, records: list[tuple[str, int, int | None]], step: int
) -> OtherWriter:
    return OtherWriter(catalog.load_table(table.name()), records, step)


def test_another_days_commit_while_a_day_streams_stays_under_it(catalog: SqlCatalog) -> None:
    """Another partition's day lands on main while this one is staged: their key ranges are apart,
    so this day lands on top of it, one snapshot, as if it had run after it."""
    table = new_table(catalog)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    before = history(table)
    other_day = landing_once(catalog, table, [("z", 0, 26)], 5)
    outcome = merge_into(table, batch([("b", 0, 2), ("c", 0, 3)], 1), "k", chunk_rows=1, before_commit=other_day)
    assert other_day.landed and history(table)[2:] == before and len(history(table)) == len(before) + 2
    assert outcome.snapshot_id == history(table)[0] and (outcome.rows_inserted, outcome.rows_updated) == (2, 0)
    assert table_state(table) == {
        "a": (0, 1, stamp(0)),
        "b": (0, 2, stamp(1)),
        "c": (0, 3, stamp(1)),
        "z": (0, 26, stamp(5)),
    }
    assert list(table.refresh().metadata.refs) == ["main"]


@pytest.mark.parametrize(
    ("stored", "theirs"),
    [
        ([("a", 0, 1)], [("b", 0, 9)]),  # a key the streamed day also holds
        ([("a", 0, 1)], [("bb", 0, 9)]),  # a key within the day's key range [b, c]
        ([("b", 0, 1), ("y", 0, 1)], [("y", 0, 9)]),  # a rewrite of the file the day rewrites too
    ],
    ids=["same key", "key in range", "same file"],
)
def test_a_commit_within_the_streamed_days_keys_is_a_retryable_conflict(
    catalog: SqlCatalog, stored: list[tuple[str, int, int]], theirs: list[tuple[str, int, int]]
) -> None:
    table = new_table(catalog)
    merge_into(table, batch(stored, 0), "k")
    model = Model({})
    model.apply(stored, 0)
    other_writer = landing_once(catalog, table, theirs, 5)
    day = batch([("b", 0, 2), ("c", 0, 3)], 1)  # one chunk of keys [b, c]
    with pytest.raises(MergeConflictError, match=r"moved while a chunked merge was staged.*try again") as caught:
        merge_into(table, day, "k", chunk_rows=2, before_commit=other_writer)
    assert caught.value.transient and other_writer.landed
    model.apply(theirs, 5)
    assert table_state(table) == model.rows
    assert list(table.refresh().metadata.refs) == ["main"]


def test_a_schema_change_while_a_day_streams_is_a_retryable_conflict(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    other = catalog.load_table(table.name())

    def evolve_then_land(plan: object) -> None:
        if "extra" not in other.refresh().schema().column_names:
            other.update_schema().add_column("extra", StringType()).commit()
            merge_into(other.refresh(), batch([("z", 0, 26)], 5), "k")

    with pytest.raises(MergeConflictError, match="schema or partition spec changed"):
        merge_into(table, batch([("b", 0, 2), ("c", 0, 3)], 1), "k", chunk_rows=1, before_commit=evolve_then_land)
    assert table_state(table) == {"a": (0, 1, stamp(0)), "z": (0, 26, stamp(5))}


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stored=st.lists(record, max_size=20),
    ours=st.lists(record, min_size=1, max_size=20),
    theirs=st.lists(record, min_size=1, max_size=10),
    apart=st.booleans(),
    chunk_rows=st.integers(1, 7),
    distinct=st.booleans(),
)
def test_a_streamed_day_with_another_writer_landing_matches_the_dict_model(
    stored: list[tuple[str, int, int | None]],
    ours: list[tuple[str, int, int | None]],
    theirs: list[tuple[str, int, int | None]],
    apart: bool,
    chunk_rows: int,
    distinct: bool,
) -> None:
    """Another writer's merge lands on main while a day streams. Either the day lands on top, and
    the table is the dict model of the stored rows, then theirs, then the day's; or it is a
    retryable conflict and the table is the model of the stored rows, then theirs. ``apart``: their
    keys sort after every key the day holds, so the day must land."""
    if apart:
        theirs = [(f"zz-{k}", p, v) for k, p, v in theirs]
    if distinct:
        ours = list({k: (k, p, v) for k, p, v in ours}.values())
    with tempfile.TemporaryDirectory() as folder:
        catalog = new_catalog(Path(folder))
        table = new_table(catalog, small_files=True)
        model = Model({})
        if stored:
            merge_into(table, batch(stored, 0), "k")
            model.apply(stored, 0)
        other_writer = landing_once(catalog, table, theirs, 2)
        try:
            merge_into(
                table, batch(ours, 1), "k", chunk_rows=chunk_rows, keys_distinct=distinct, before_commit=other_writer
            )
        except MergeConflictError:
            assert not apart
            event("a conflict")
            model.apply(theirs, 2)
        else:
            event("landed on top of theirs" if other_writer.landed else "no chunk committed: theirs never ran")
            if other_writer.landed:
                model.apply(theirs, 2)
            model.apply(ours, 1)
        assert {k: v[:2] for k, v in table_state(table).items()} == {k: v[:2] for k, v in model.rows.items()}
        assert list(table.refresh().metadata.refs) == ["main"]


DAYS = Schema(
    NestedField(1, "k", LongType(), required=False),
    NestedField(2, "d", DateType(), required=False),
    NestedField(3, "v", LongType(), required=False),
    NestedField(4, INGESTED_AT, TimestamptzType(), required=False),
)
JUNE_1 = dt.date(2024, 6, 1)


def day_rows(records: list[tuple[int, dt.date, int]], step: int) -> pa.Table:
    return pa.table(
        {
            "k": pa.array([r[0] for r in records], pa.int64()),
            "d": pa.array([r[1] for r in records], pa.date32()),
            "v": pa.array([r[2] for r in records], pa.int64()),
            INGESTED_AT: pa.array([stamp(step)] * len(records), pa.timestamp("us", tz="UTC")),
        }
    )


def values_by_key(table: Table) -> dict[int, int]:
    return {r["k"]: r["v"] for r in table.refresh().scan().to_arrow().to_pylist()}


@pytest.mark.parametrize(
    ("theirs", "their_replace", "lands"),
    [
        ([(5000, JUNE_1, 7)], False, False),
        ([(10, JUNE_1, 1), (5000, JUNE_1, 7)], True, False),
        ([(5000, JUNE_1 + dt.timedelta(days=1), 7)], False, True),
    ],
    ids=["a late row merged into the day", "the day replaced by another run", "a row of another day"],
)
def test_a_streamed_replace_conflicts_with_any_commit_in_its_day(
    catalog: SqlCatalog, theirs: list[tuple[int, dt.date, int]], their_replace: bool, lands: bool
) -> None:
    """A replace depends on every row of its day, whatever the key: another writer's row in the
    day (its key outside the day's keys) would otherwise outlive the replace."""
    table = catalog.create_table(f"n.t{next(_counter)}", schema=DAYS)
    merge_into(table, day_rows([(10, JUNE_1, 1)], 0), "k")
    other, landed = catalog.load_table(table.name()), []

    def other_writer(plan: object) -> None:
        if not landed:
            replace = PartitionReplace("d", JUNE_1) if their_replace else None
            landed.append(merge_into(other.refresh(), day_rows(theirs, 2), "k", replace=replace))

    ours = [(k, JUNE_1, 2) for k in (10, 11, 12, 13)]
    replace = PartitionReplace("d", JUNE_1, keep=pa.table({"k": pa.array([k for k, _, _ in ours], pa.int64())}))
    run = functools.partial(merge_into, table, day_rows(ours, 1), "k", chunk_rows=2, before_commit=other_writer)
    if lands:
        run(replace=replace)
        assert values_by_key(table) == {10: 2, 11: 2, 12: 2, 13: 2, 5000: 7}
    else:
        with pytest.raises(MergeConflictError, match="the day it replaced"):
            run(replace=replace)
        assert values_by_key(table) == {10: 1, 5000: 7}
    assert landed and list(table.refresh().metadata.refs) == ["main"]


def test_an_empty_streamed_replace_empties_its_day(catalog: SqlCatalog) -> None:
    """As an empty batch merged whole does (see ``merge_into``)."""
    table = catalog.create_table(f"n.t{next(_counter)}", schema=DAYS)
    merge_into(table, day_rows([(10, JUNE_1, 1), (20, JUNE_1 + dt.timedelta(days=1), 1)], 0), "k")
    nothing = pa.table({"k": pa.array([], pa.int64())})
    merge_into(table, iter([]), "k", chunk_rows=2, replace=PartitionReplace("d", JUNE_1, keep=nothing))
    assert values_by_key(table) == {20: 1} and list(table.refresh().metadata.refs) == ["main"]


@pytest.mark.parametrize("key", ["d", "at"])
def test_a_streamed_batch_whose_temporal_keys_are_text_is_merged(catalog: SqlCatalog, key: str) -> None:
    schema = Schema(
        NestedField(1, "d", DateType(), required=False),
        NestedField(2, "at", TimestamptzType(), required=False),
        NestedField(3, "v", LongType(), required=False),
    )
    table = catalog.create_table(f"n.t{next(_counter)}", schema=schema)
    days = ["2024-06-01", "2024-06-02", "2024-06-03"]
    rows = pa.table({"d": days, "at": [f"{d}T12:00:00+00:00" for d in days], "v": [1, 2, 3]})
    outcome = merge_into(table, rows, key, chunk_rows=1)
    assert outcome.rows_inserted == 3
    stored = sorted((r["d"].isoformat(), r["v"]) for r in table.refresh().scan().to_arrow().to_pylist())
    assert stored == [(d, v) for d, v in zip(days, [1, 2, 3], strict=True)]


def test_chunked_merge_failing_stream_leaves_target(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    before = table.refresh().metadata.current_snapshot_id
    good = batch([("b", 0, 2)], 1)

    def broken_stream():
        yield from good.to_batches()
        raise OSError("the source went away mid-stream")

    with pytest.raises(OSError, match="mid-stream"):
        merge_into(table, pa.RecordBatchReader.from_batches(good.schema, broken_stream()), "k", chunk_rows=1)
    assert table.refresh().metadata.current_snapshot_id == before
    assert list(table.metadata.refs) == ["main"]


def parquet_files(table: Table) -> set[Path]:
    return set(Path(table.location().removeprefix("file://")).rglob("*.parquet"))


def test_chunks_that_only_insert_are_committed_once(catalog: SqlCatalog) -> None:
    """Distinct keys, and no chunk replaces a stored file: the chunks' files wait and land in one
    snapshot; a chunk that does replace one commits the files carried so far with its own."""
    table = new_table(catalog)
    merge_into(table, batch([("m", 0, 1)], 0), "k")
    before = len(table.refresh().snapshots())
    merge_into(table, batch([(f"a{i}", 0, 2) for i in range(10)], 1), "k", chunk_rows=3, keys_distinct=True)
    assert len(table.refresh().snapshots()) == before + 1
    records = [*((f"b{i}", 0, 3) for i in range(6)), ("m", 0, 3), *((f"c{i}", 0, 3) for i in range(5))]
    outcome = merge_into(table, batch(records, 2), "k", chunk_rows=3, keys_distinct=True)
    assert len(table.refresh().snapshots()) == before + 3  # the chunk updating m, then the last inserts
    assert (outcome.rows_inserted, outcome.rows_updated, outcome.files_rewritten) == (11, 1, 1)
    assert table_state(table)["m"] == (0, 3, stamp(2)) and len(table_state(table)) == 22


def test_a_failing_stream_removes_the_files_its_chunks_carried(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    before, files = table.refresh().metadata.current_snapshot_id, parquet_files(table)

    def chunks():
        yield batch([("b", 0, 2)], 1)
        yield batch([("c", 0, 2)], 1)
        raise OSError("the source went away mid-stream")

    with pytest.raises(OSError, match="mid-stream"):
        merge_into(table, chunks(), "k", chunk_rows=1, keys_distinct=True)
    assert table.refresh().metadata.current_snapshot_id == before
    assert parquet_files(table) == files  # the two chunks' files were written, never committed, and removed


def test_a_background_write_that_fails_is_raised_and_leaves_no_file(catalog: SqlCatalog) -> None:
    """Carried chunks are written on a thread: its error reaches the merge, its files are removed."""
    table = new_table(catalog)
    files = parquet_files(table)
    carried = CarriedFiles(table)
    carried.write(prepare_batch(batch([("a", 0, 1)], 0), table.schema(), ("k",)))
    carried.write(pa.table({"k": pa.array([1, 2], pa.int64())}))  # not the table's schema: fails
    with pytest.raises(ResolveError, match="Cannot promote long to string"):
        carried.files()
    assert len(parquet_files(table) - files) == 1  # the first chunk's file, written
    carried.discard()
    assert parquet_files(table) == files


def test_append_into_adds_rows_as_they_are_one_snapshot_each(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    first = append_into(table, batch([("a", 0, 1), ("a", 0, 1)], 0))
    second = append_into(table, batch([("a", 0, 1)], 0).drop_columns(["note"]))  # conformed: note is null
    assert (first.rows_inserted, second.rows_inserted, len(table.refresh().snapshots())) == (2, 1, 2)
    rows = table.scan().to_arrow().sort_by("note").to_pylist()
    assert [(r["k"], r["v"], r["note"]) for r in rows] == [("a", 1, "n"), ("a", 1, "n"), ("a", 1, None)]


def test_appends_racing_each_other_all_land(catalog: SqlCatalog) -> None:
    name = new_table(catalog).name()

    def append(n: int) -> None:  # each writer with its own view of the table, as separate processes have
        append_into(catalog.load_table(name), batch([(f"k{n}", 0, n)], 0))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(append, range(8)))
    table = catalog.load_table(name)
    assert sorted(table.scan().to_arrow()["k"].to_pylist()) == sorted(f"k{n}" for n in range(8))
    assert len(table.snapshots()) == 8


def test_commit_on_another_branch_between_plan_and_commit_is_replanned(catalog: SqlCatalog) -> None:
    table = new_table(catalog)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    table.manage_snapshots().create_branch(table.refresh().metadata.current_snapshot_id, "dev").commit()
    other_writer = catalog.load_table(table.name())
    commits_on_main: list[int] = []

    def concurrent_commit(plan: object) -> None:
        if not commits_on_main:
            commits_on_main.append(merge_into(other_writer, batch([("m", 0, 9)], 5), "k").snapshot_id or 0)

    outcome = merge_into(table, batch([("a", 0, 2)], 1), "k", branch="dev", before_commit=concurrent_commit)
    assert outcome.commit_attempts == 2
    assert table_state(table, "dev") == {"a": (0, 2, stamp(1))}
    assert table_state(table) == {"a": (0, 1, stamp(0)), "m": (0, 9, stamp(5))}


@pytest.mark.parametrize(
    ("iceberg_type", "arrow_type", "value"),
    [
        pytest.param(DateType(), pa.date32(), lambda day: dt.date(2024, 5, day), id="identity-date"),
        pytest.param(
            TimestamptzType(),
            pa.timestamp("us", tz="UTC"),
            lambda day: dt.datetime(2024, 5, day, 6, tzinfo=dt.UTC),
            id="identity-timestamp",
        ),
    ],
)
def test_identity_partitions_on_temporal_columns_prune_and_replace(
    catalog: SqlCatalog, iceberg_type: Any, arrow_type: pa.DataType, value: Any
) -> None:
    """Partition values of dates and timestamps compare as Iceberg stores them (days, micros)."""
    schema = Schema(
        NestedField(1, "k", StringType(), required=False),
        NestedField(2, "d", iceberg_type, required=False),
        NestedField(3, "v", LongType(), required=False),
        NestedField(4, INGESTED_AT, TimestamptzType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="d"))
    table = catalog.create_table(f"n.t{next(_counter)}", schema=schema, partition_spec=spec)

    def rows(day: int, values: dict[str, int]) -> pa.Table:
        return pa.table(
            {
                "k": list(values),
                "d": pa.array([value(day)] * len(values), arrow_type),
                "v": list(values.values()),
                INGESTED_AT: pa.array([stamp(day)] * len(values), pa.timestamp("us", tz="UTC")),
            }
        )

    merge_into(table, rows(1, {"a": 1, "b": 2}), ("k", "d"))
    merge_into(table, rows(2, {"a": 3}), ("k", "d"))
    outcome = merge_into(table, rows(2, {"a": 4, "c": 5}), ("k", "d"))
    stored = {(r["k"], r["d"]): r["v"] for r in table.refresh().scan().to_arrow().to_pylist()}
    assert stored == {("a", value(1)): 1, ("b", value(1)): 2, ("a", value(2)): 4, ("c", value(2)): 5}
    assert table.scan().to_arrow().num_rows == 4
    assert (outcome.rows_inserted, outcome.rows_updated) == (1, 1)
    assert outcome.files_considered == 1  # only day 2's file


@pytest.mark.parametrize("spec", [UNPARTITIONED_PARTITION_SPEC, BY_P], ids=["unpartitioned", "partitioned"])
def test_two_merges_planned_together_inserting_one_key_leave_one_row(catalog: SqlCatalog, spec: PartitionSpec) -> None:
    """Appends never conflict in Iceberg: the commit must be checked against what landed since the plan."""
    table = new_table(catalog, spec)
    merge_into(table, batch([("seed", 0, 0)], 0), "k")
    planned = threading.Barrier(2, timeout=30)
    attempts: list[int] = []

    def writer(value: int) -> MergeOutcome:
        mine = catalog.load_table(table.name())  # each writer its own view, as in two processes

        def both_planned(plan: object) -> None:
            attempts.append(value)
            if attempts.count(value) == 1:  # the first plan of each writer: wait for the other's
                planned.wait()

        return merge_into(mine, batch([("new", 1, value)], value), "k", before_commit=both_planned)

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(writer, [1, 2]))
    state = table_state(table)  # asserts one row per key
    assert set(state) == {"seed", "new"}
    assert sorted(o.commit_attempts for o in outcomes) == [1, 2]  # the loser re-planned once
    loser = next(o for o in outcomes if o.commit_attempts == 2)
    assert (loser.rows_inserted, loser.rows_updated) == (0, 1)  # and saw the winner's row
    assert state["new"][1] == (1 if loser is outcomes[0] else 2)  # the last committer wins
