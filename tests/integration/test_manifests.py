"""Bounded metadata on the write path: merged manifests, metadata files kept, pruning across merges.

On a real SQLite catalog; the dict model and helpers are those of ``test_merge``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import ManifestFile
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.table import Table

import cascade.expiry
from cascade import merge_into
from cascade.catalog import METADATA_PROPERTIES, load_or_create_table
from cascade.errors import ConfigurationError
from cascade.expiry import MAX_SNAPSHOTS
from cascade.merge.batch import prepare_batch
from cascade.merge.plan import plan_merge
from cascade.tables import ingested_partitions
from tests.conftest import examples
from tests.integration.test_merge import BY_P, SCHEMA, Model, batch, new_catalog, stamp, table_state

MIN_COUNT = "commit.manifest.min-count-to-merge"
TARGET_SIZE = "commit.manifest.target-size-bytes"
MERGE_ENABLED = "commit.manifest-merge.enabled"
KEEP_METADATA = "write.metadata.previous-versions-max"
_tables = iter(range(1_000_000))


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return new_catalog(tmp_path)


def cascade_table(catalog: SqlCatalog, spec: PartitionSpec = BY_P, **properties: str) -> Table:
    """A table as Cascade creates it, with extra table properties."""
    return load_or_create_table(
        catalog, ("n", f"m{next(_tables)}"), SCHEMA, partition_spec=spec, properties=dict(properties)
    )


def manifests(table: Table, branch: str = "main") -> list[ManifestFile]:
    head = table.refresh().snapshot_by_name(branch)
    assert head is not None
    return head.manifests(table.io)


def metadata_files(table: Table) -> list[Path]:
    return sorted(Path(table.location().removeprefix("file://"), "metadata").glob("*.metadata.json"))


def test_manifest_count_stays_bounded_over_100_commits(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{MIN_COUNT: "5"})
    model = Model({})
    most = 0
    for step in range(100):  # twenty rounds of merging (bench/history.py runs thousands of commits)
        # ten partitions in turn; each step updates its partition's keys and adds one
        p = step % 10
        records = [(f"p{p}-{i}", p, step) for i in range(3)] + [(f"p{p}-new-{step}", p, 0)]
        merge_into(table, batch(records, step), "k")
        model.apply(records, step)
        listed = manifests(table)
        most = max(most, len(listed))
        assert len(listed) < 5, f"step {step}: {len(listed)} manifests"
    assert most == 4  # it does grow to the threshold before merging
    assert table_state(table) == model.rows


def test_without_merging_only_manifests_with_live_files_are_kept(catalog: SqlCatalog) -> None:
    """pyiceberg's overwrite carried every earlier delete-only manifest forward; those are dropped."""
    table = cascade_table(catalog, **{MERGE_ENABLED: "false"})
    for step in range(40):  # the same partition rewritten each time: one live file
        merge_into(table, batch([("a", 0, step), ("b", 0, step)], step), "k")
    listed = manifests(table)
    # the live file's manifest and this commit's record of the file it replaced
    assert len(listed) == 2
    assert sorted((m.added_files_count, m.deleted_files_count) for m in listed) == [(0, 1), (1, 0)]


def test_merging_disabled_keeps_one_manifest_per_commit_of_live_files(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{MERGE_ENABLED: "false", MIN_COUNT: "2"})
    for p in range(12):  # twelve partitions, each written once: twelve live files
        merge_into(table, batch([(f"k{p}", p, 0)], p), "k")
    assert len(manifests(table)) == 12
    table.transaction().set_properties({MERGE_ENABLED: "true"}).commit_transaction()
    merge_into(table, batch([("k12", 12, 0)], 12), "k")
    assert len(manifests(table)) == 1


def test_small_target_size_keeps_full_manifests_apart(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{MIN_COUNT: "2", TARGET_SIZE: "1"})
    for p in range(6):  # each manifest alone outweighs the target: nothing to merge
        merge_into(table, batch([(f"k{p}", p, 0)], p), "k")
    assert len(manifests(table)) == 6


batches = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from([f"key-{i:02d}" for i in range(16)]),
            st.integers(0, 3),
            st.one_of(st.none(), st.integers(0, 2)),
        ),
        max_size=12,
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=batches,
    min_count=st.integers(2, 4),
    target_size=st.sampled_from(["8388608", "12000"]),
    stable=st.booleans(),
)
def test_merged_manifests_match_the_dict_model(
    steps: list[list[tuple[str, int, int | None]]], min_count: int, target_size: str, stable: bool
) -> None:
    if stable:  # a key keeps the partition of its first appearance, so pruning is exact
        first_p: dict[str, int] = {}
        steps = [[(k, first_p.setdefault(k, p), v) for k, p, v in s] for s in steps]
    with tempfile.TemporaryDirectory() as folder:
        table = cascade_table(new_catalog(Path(folder)), **{MIN_COUNT: str(min_count), TARGET_SIZE: target_size})
        model = Model({})
        for step, records in enumerate(steps):
            outcome = merge_into(table, batch(records, step), "k", stable_partitions=stable)
            expected = model.apply(records, step)
            assert (outcome.rows_inserted, outcome.rows_updated, outcome.rows_unchanged) == expected[:3]
            assert table_state(table) == model.rows
            if table.current_snapshot() is not None and target_size == "8388608":  # one bin: merged at min_count
                assert len(manifests(table)) < min_count
                summary = table.current_snapshot().summary  # type: ignore[union-attr]
                assert int(summary["total-records"]) == len(model.rows)  # type: ignore[index]


class RecordingIO(PyArrowFileIO):
    """The real local FileIO, remembering which files were opened for reading."""

    def __init__(self, properties: dict[str, str]) -> None:
        super().__init__(properties)
        self.opened: list[str] = []

    def new_input(self, location: str):  # type: ignore[no-untyped-def]
        self.opened.append(location)
        return super().new_input(location)


def opened_manifests(table: Table, records: list[tuple[str, int, int | None]], *, stable: bool) -> list[str]:
    """Manifests (not manifest lists) that planning a merge of ``records`` opens."""
    io = RecordingIO(table.io.properties)
    table = table.refresh()
    table.io = io
    plan_merge(table, prepare_batch(batch(records, 99), table.schema(), ("k",)), ("k",), stable_partitions=stable)
    head = table.current_snapshot()
    assert head is not None
    return [path for path in io.opened if path.endswith(".avro") and path != head.manifest_list]


def test_planning_opens_only_manifests_whose_partitions_can_match(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{MERGE_ENABLED: "false"})
    for p in range(20):  # one manifest per partition
        merge_into(table, batch([(f"p{p}-{i}", p, i) for i in range(5)], p), "k")
    by_partition = {m.manifest_path: m for m in manifests(table)}
    opened = opened_manifests(table, [("p3-1", 3, 9), ("p17-new", 17, 1)], stable=True)
    assert len(opened) == 2
    assert {by_partition[path].partitions[0].lower_bound for path in opened} == {  # type: ignore[index]
        (3).to_bytes(8, "little"),
        (17).to_bytes(8, "little"),
    }
    # with partitions that may move (the key alone does not fix them), every manifest is needed
    assert len(opened_manifests(table, [("p3-1", 3, 9)], stable=False)) == 20


def test_merges_across_merged_manifests_still_prune(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{MIN_COUNT: "3"})
    for p in range(30):  # 30 partitions, one file each, merged into few manifests
        merge_into(table, batch([(f"p{p}-{i}", p, i) for i in range(50)], 0), "k", stable_partitions=True)
    assert len(manifests(table)) < 3
    update = [(f"p3-{i}", 3, -1) for i in range(10)] + [(f"p17-{i}-new", 17, 1) for i in range(10)]
    outcome = merge_into(table, batch(update, 1), "k", stable_partitions=True)
    assert (outcome.rows_updated, outcome.rows_inserted) == (10, 10)
    assert (outcome.files_considered, outcome.files_read, outcome.files_rewritten) == (2, 2, 1)
    state = table_state(table)
    assert len(state) == 30 * 50 + 10
    assert state["p3-4"] == (3, -1, stamp(1))
    assert state["p4-4"] == (4, 4, stamp(0))


def test_new_tables_keep_only_recent_metadata_files(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{KEEP_METADATA: "3"})
    assert {k: table.metadata.properties[k] for k in METADATA_PROPERTIES} == {**METADATA_PROPERTIES, KEEP_METADATA: "3"}
    for step in range(10):
        merge_into(table, batch([("a", 0, step)], step), "k")
    assert len(table.refresh().metadata.metadata_log) == 3
    assert len(metadata_files(table)) == 4  # the current one and the three it logs
    assert len(table.snapshots()) == 10  # metadata files go, snapshots stay


def test_an_older_table_gets_the_metadata_properties_on_its_next_merge(catalog: SqlCatalog) -> None:
    table = catalog.create_table("n.older", schema=SCHEMA, partition_spec=BY_P, properties={KEEP_METADATA: "2"})
    for step in range(4):
        merge_into(table, batch([("a", 0, step)], step), "k")
    properties = table.refresh().metadata.properties
    assert properties["write.metadata.delete-after-commit.enabled"] == "true"
    assert properties[KEEP_METADATA] == "2"  # a value someone set is kept
    assert len(metadata_files(table)) == 3
    assert table_state(table) == {"a": (0, 3, stamp(3))}


def test_a_bad_property_value_is_refused_with_nothing_committed(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{MIN_COUNT: "lots"})
    with pytest.raises(ConfigurationError, match=rf"table n\.m\d+: table property {MIN_COUNT}='lots'"):
        merge_into(table, batch([("a", 0, 1)], 0), "k")
    assert table.refresh().current_snapshot() is None
    assert not list(Path(table.location().removeprefix("file://")).rglob("*.parquet"))


@pytest.fixture
def small_history_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expiry's floor and slack made small, so a few dozen commits see it happen more than once."""
    monkeypatch.setattr(cascade.expiry, "LEAST_MAX_SNAPSHOTS", 20)
    monkeypatch.setattr(cascade.expiry, "EXPIRY_SLACK", 10)


@pytest.mark.usefixtures("small_history_limits")
def test_merges_expire_their_own_old_snapshots_and_keep_coverage(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{MAX_SNAPSHOTS: "20"})
    model = Model({})
    most = 0
    for step in range(70):  # the limit passed by the slack three times
        records = [(f"k{step % 7}", step % 10, step), (f"new-{step}", step % 10, 0)]
        properties = {"cascade.asset": "a", "cascade.partition": f"day-{step:03d}"}
        merge_into(table, batch(records, step), "k", snapshot_properties=properties)
        model.apply(records, step)
        most = max(most, len(table.refresh().metadata.snapshots))
    assert 20 < most <= 20 + cascade.expiry.EXPIRY_SLACK + 1  # the initial empty snapshot aside, limit + slack at most
    assert table_state(table) == model.rows
    assert ingested_partitions(table, "a") == {f"day-{step:03d}" for step in range(70)}  # resume survives


@pytest.mark.usefixtures("small_history_limits")
def test_upkeep_on_commit_can_be_turned_off(catalog: SqlCatalog) -> None:
    table = cascade_table(catalog, **{MAX_SNAPSHOTS: "0"})
    for step in range(45):
        merge_into(table, batch([(f"new-{step}", 0, 0)], step), "k")
    assert len(table.refresh().metadata.snapshots) >= 45
