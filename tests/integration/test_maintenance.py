"""Table maintenance (``cascade.maintenance``) against the dict model, on a real SQLite catalog.

Random sequences of merges, compactions, manifest rewrites, expiries and orphan removals must
leave the table equal to the model after every step, and the partitions that backfill resume
reads (``ingested_partitions``) equal to those committed, however many snapshots expired.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.table import Table

from cascade import merge_into
from cascade.expiry import commit_expiry, plan_expiry
from cascade.maintenance import (
    _replacing,
    compact_files,
    expire_snapshots,
    maintain,
    plan_compaction,
    referenced_files,
    remove_orphan_files,
    rewrite_groups,
    rewrite_manifests,
)
from cascade.maintenance_policy import MaintenancePolicy
from cascade.merge.commit import commit_plan
from cascade.tables import branches, create_branch, history, ingested_partitions, publish_branch
from tests.conftest import examples
from tests.integration.test_merge import BY_P, Model, batch, new_catalog, new_table, table_state

ASSET = "things"
SMALL = 64 * 1024  # every test file is far below this: all of a partition's files are small
DAYS = [f"2024-05-{d:02d}" for d in range(1, 8)]


def run_properties(partition: str, run: str, branch: str = "main") -> dict[str, str]:
    """The summary properties ``cascade.run`` puts on its snapshots."""
    return {"cascade.asset": ASSET, "cascade.partition": partition, "cascade.branch": branch, "cascade.run-id": run}


def merge(table: Table, records: list[tuple[str, int, int | None]], step: int, partition: str, branch: str = "main"):
    return merge_into(
        table,
        batch(records, step),
        "k",
        branch=branch,
        snapshot_properties=run_properties(partition, f"r{step}", branch),
    )


def data_files(table: Table, branch: str = "main") -> list[str]:
    head = table.refresh().snapshot_by_name(branch)
    return (
        [] if head is None else [task.file.file_path for task in table.scan(snapshot_id=head.snapshot_id).plan_files()]
    )


def local(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def all_referenced_exist(table: Table) -> None:
    for path in referenced_files(table.refresh()):
        assert Path(path).exists(), f"referenced file {path} was removed"


# --- the model ------------------------------------------------------------------------------

keys = st.sampled_from([f"key-{i:02d}" for i in range(16)])
record = st.tuples(keys, st.integers(0, 2), st.one_of(st.none(), st.integers(0, 2)))
merge_step = st.tuples(st.just("merge"), st.lists(record, min_size=1, max_size=12), st.sampled_from(DAYS))
other_step = st.sampled_from([("compact",), ("manifests",), ("expire", 1), ("expire", 3), ("orphans",)])
steps = st.lists(st.one_of(merge_step, merge_step, other_step), min_size=2, max_size=12)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, stable=st.booleans())
def test_maintenance_keeps_the_table_equal_to_the_model(steps: list[tuple], stable: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        table = new_table(new_catalog(Path(folder)), BY_P, small_files=True)
        model = Model({})
        committed: set[str] = set()
        first_p: dict[str, int] = {}
        for number, step in enumerate(steps):
            if step[0] == "merge":
                records = [(k, first_p.setdefault(k, p) if stable else p, v) for k, p, v in step[1]]
                outcome = merge_into(
                    table,
                    batch(records, number),
                    "k",
                    snapshot_properties=run_properties(step[2], f"r{number}"),
                    stable_partitions=stable,
                )
                model.apply(records, number)
                if outcome.committed:
                    committed.add(step[2])
            elif step[0] == "compact":
                result = compact_files(table, target_file_size=SMALL)
                assert result.files_added <= result.partitions  # each partition's rows fit one file
            elif step[0] == "manifests":
                result = rewrite_manifests(table)
                assert result.manifests_after <= 1
            elif step[0] == "expire":
                expire_snapshots(table, older_than=dt.timedelta(0), retain_last=step[1], now=_later())
                head = table.refresh().current_snapshot()
                assert head is None or len(history(table)) <= step[1]
            else:
                remove_orphan_files(table, older_than=dt.timedelta(0), now=_later())
                all_referenced_exist(table)
            assert table_state(table) == model.rows, f"after step {number}: {step[0]}"
            assert ingested_partitions(table.refresh(), ASSET) == committed, f"after step {number}: {step[0]}"


def _later() -> dt.datetime:
    """A moment after every file and snapshot so far: a zero window then takes them all."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)


# --- compaction -----------------------------------------------------------------------------


def test_compaction_rewrites_each_partition_into_one_file_with_identical_values(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P, small_files=True)
    for step in range(6):
        merge(table, [(f"k{step}-{i}", i % 2, i) for i in range(5)], step, DAYS[step])
    tricky = pa.table(
        {
            "k": pa.array(["nan", "ünï\u0000code", "  spaced  "]),
            "p": pa.array([0, 0, 1], pa.int64()),
            "v": pa.array([None, 2**62, -1], pa.int64()),
            "note": pa.array(["\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "", None]),
            "_cascade_ingested_at": pa.array([None] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    merge_into(table, tricky, "k")
    before_rows = table.refresh().scan().to_arrow().sort_by("k")
    before_files = data_files(table)
    assert len(before_files) > 2

    result = compact_files(table, target_file_size=SMALL)

    after_files = data_files(table)
    assert result.partitions == 2 and result.files_added == 2 and len(after_files) == 2
    assert result.files_removed == len(before_files) and result.rows == before_rows.num_rows
    assert table.refresh().scan().to_arrow().sort_by("k").equals(before_rows)  # every value, byte for byte
    head = table.current_snapshot()
    assert head.summary["cascade.operation"] == "compact" and head.summary.operation.value == "overwrite"
    assert compact_files(table, target_file_size=SMALL).files_removed == 0  # one file per partition: nothing to do


def test_compaction_keeps_nan_and_floats_bit_for_bit(tmp_path: Path) -> None:
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, NestedField, StringType

    catalog = new_catalog(tmp_path)
    schema = Schema(NestedField(1, "k", StringType()), NestedField(2, "x", DoubleType()))
    table = catalog.create_table("n.floats", schema=schema, properties={"cascade.unique-key": "k"})
    values = [float("nan"), -0.0, 1e-310, float("inf"), 0.1]
    for i, x in enumerate(values):
        merge_into(table, pa.table({"k": [f"k{i}"], "x": pa.array([x], pa.float64())}), "k")
    compact_files(table, target_file_size=SMALL)
    rows = table.refresh().scan().to_arrow().sort_by("k")
    assert len(data_files(table)) == 1
    got = rows.column("x").to_pylist()
    assert math.isnan(got[0]) and [math.copysign(1, got[1]), *got[2:]] == [-1, 1e-310, float("inf"), 0.1]


def test_files_near_the_target_are_left_alone(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P)
    merge(table, [(f"a{i}", 0, i) for i in range(50)], 0, DAYS[0])
    merge(table, [(f"b{i}", 0, i) for i in range(50)], 1, DAYS[1])
    size = max(os.path.getsize(local(f)) for f in data_files(table))
    assert plan_compaction(table, branch="main", target_file_size=size).groups == ()  # both files > 75% of target
    assert len(plan_compaction(table, branch="main", target_file_size=size * 10).groups) == 1


def test_compaction_that_loses_to_a_merge_commits_nothing_and_replans(tmp_path: Path) -> None:
    catalog = new_catalog(tmp_path)
    table = new_table(catalog, BY_P, small_files=True)
    for step in range(3):
        merge(table, [(f"k{step}", 0, step)], step, DAYS[step])
    stale = catalog.load_table(table.name())
    plan = plan_compaction(stale, branch="main", target_file_size=SMALL)
    written = rewrite_groups(stale, plan.groups, SMALL)
    merge(table, [("k0", 0, 99)], 3, DAYS[3])  # a writer commits first
    with pytest.raises(CommitFailedException):
        commit_plan(stale, _replacing(plan), written, branch="main", properties={})
    assert table_state(table)["k0"][1] == 99  # the writer's update stands

    result = compact_files(table, target_file_size=SMALL)  # planned again on the new head
    assert result.files_removed == 3 and table_state(table)["k0"][1] == 99  # k0's file was replaced by the merge


# --- manifests ------------------------------------------------------------------------------


def test_rewrite_manifests_into_one_keeps_files_and_sequence_numbers(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P)
    for step in range(8):
        merge(table, [(f"k{step}", step % 3, step)], step, DAYS[step % 7])
    head = table.refresh().current_snapshot()
    before = {
        e.data_file.file_path: (e.sequence_number, e.file_sequence_number, e.snapshot_id)
        for m in head.manifests(table.io)
        for e in m.fetch_manifest_entry(table.io)
    }
    state = table_state(table)
    assert len(head.manifests(table.io)) == 8

    result = rewrite_manifests(table)

    head = table.refresh().current_snapshot()
    manifests = head.manifests(table.io)
    assert (result.manifests_before, result.manifests_after, len(manifests)) == (8, 1, 1)
    entries = manifests[0].fetch_manifest_entry(table.io)
    assert {e.status for e in entries} == {ManifestEntryStatus.EXISTING}
    assert {
        e.data_file.file_path: (e.sequence_number, e.file_sequence_number, e.snapshot_id) for e in entries
    } == before
    assert head.summary.operation.value == "replace" and head.summary["total-records"] == "8"
    assert table_state(table) == state
    merge(table, [("k0", 0, 100)], 9, DAYS[0])  # merges go on from the rewritten manifests
    assert table_state(table)["k0"][1] == 100
    assert rewrite_manifests(table, dry_run=True).snapshot_id is None


def test_rewrite_manifests_splits_by_target_size(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P)
    for step in range(6):
        merge(table, [(f"k{step}", step % 3, step)], step, DAYS[step])
    total = sum(m.manifest_length for m in table.refresh().current_snapshot().manifests(table.io))
    result = rewrite_manifests(table, target_manifest_size=total // 3 + 1)
    assert result.manifests_after == 3
    assert len(table.refresh().current_snapshot().manifests(table.io)) == 3


# --- expiry ---------------------------------------------------------------------------------


def test_expiry_keeps_heads_retain_last_and_resume_coverage(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P)
    for step in range(5):
        merge(table, [(f"k{step}", 0, step)], step, DAYS[step])
    create_branch(table, "review")
    merge(table, [("kr", 1, 1)], 5, DAYS[5], branch="review")
    merge(table, [("k5", 0, 5)], 6, DAYS[6])
    tagged = table.refresh().snapshot_by_name("main").parent_snapshot_id
    table.manage_snapshots().create_tag(tagged, "audit").commit()
    state = table_state(table)

    result = expire_snapshots(table, older_than=dt.timedelta(0), retain_last=2, now=_later())

    table = table.refresh()
    kept = {s.snapshot_id for s in table.snapshots()}
    assert set(branches(table).values()) <= kept and tagged in kept
    assert len(history(table)) == 2  # main: its last two
    assert [r.partition for r in history(table)] == [DAYS[4], DAYS[6]]
    assert result.snapshots_expired and result.coverage_recorded >= 1
    assert ingested_partitions(table, ASSET) == set(DAYS) - {DAYS[5]}
    assert ingested_partitions(table, ASSET, "review") == set(DAYS[:6])
    assert table_state(table) == state
    assert expire_snapshots(table, older_than=dt.timedelta(0), retain_last=2, now=_later()).snapshots_expired == ()


def test_coverage_survives_repeated_expiry_and_publish(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P)
    for step in range(3):
        merge(table, [(f"k{step}", 0, step)], step, DAYS[step])
        expire_snapshots(table, older_than=dt.timedelta(0), retain_last=1, now=_later())
    assert len(table.refresh().snapshots()) == 1
    assert ingested_partitions(table, ASSET) == set(DAYS[:3])
    create_branch(table, "dev")
    merge(table, [("d", 1, 1)], 3, DAYS[3], branch="dev")
    merge(table, [("e", 1, 1)], 4, DAYS[4], branch="dev")
    expire_snapshots(table, older_than=dt.timedelta(0), retain_last=1, now=_later())
    publish_branch(table.refresh(), "dev")
    assert ingested_partitions(table.refresh(), ASSET) == set(DAYS[:5])
    props = [k for k in table.metadata.properties if k.startswith("cascade.coverage.")]
    assert len(props) <= len(table.metadata.snapshots)  # entries of expired snapshots are dropped


def test_expiry_respects_its_age_limit(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P)
    for step in range(4):
        merge(table, [(f"k{step}", 0, step)], step, DAYS[step])
    result = expire_snapshots(table, older_than=dt.timedelta(days=7), retain_last=1)
    assert result.snapshots_expired == () and len(table.refresh().snapshots()) == 4


def test_expiry_that_loses_to_a_merge_commits_nothing(tmp_path: Path) -> None:
    catalog = new_catalog(tmp_path)
    table = new_table(catalog, BY_P)
    for step in range(3):
        merge(table, [(f"k{step}", 0, step)], step, DAYS[step])
    stale = catalog.load_table(table.name())
    plan = plan_expiry(stale, cutoff_ms=int(_later().timestamp() * 1000), retain_last=1)
    merge(table, [("k9", 0, 9)], 3, DAYS[3])
    with pytest.raises(CommitFailedException):
        commit_expiry(stale, plan)
    assert len(table.refresh().snapshots()) == 4
    assert expire_snapshots(table, older_than=dt.timedelta(0), retain_last=1, now=_later()).attempts == 1


# --- orphans --------------------------------------------------------------------------------


def test_orphans_old_unreferenced_removed_fresh_and_referenced_kept(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P, small_files=True)
    for step in range(3):
        merge(table, [(f"k{step}", step % 2, step)], step, DAYS[step])
    root = local(table.location())
    old_orphan = root / "data" / "p=0" / "00000-dead-run.parquet"
    fresh_orphan = root / "data" / "p=1" / "00000-in-flight.parquet"
    for orphan in (old_orphan, fresh_orphan):
        pq.write_table(pa.table({"k": ["x"]}), orphan)
    four_days_ago = time.time() - 4 * 86400
    os.utime(old_orphan, (four_days_ago, four_days_ago))
    referenced = referenced_files(table.refresh())
    for path in referenced:  # old referenced files are kept however old
        os.utime(path, (four_days_ago, four_days_ago))
    state = table_state(table)

    dry = remove_orphan_files(table, older_than=dt.timedelta(days=3), dry_run=True)
    assert [local(f) for f in dry.files_removed] == [old_orphan] and old_orphan.exists()
    result = remove_orphan_files(table, older_than=dt.timedelta(days=3))

    assert [local(f) for f in result.files_removed] == [old_orphan]
    assert not old_orphan.exists() and fresh_orphan.exists()
    assert result.files_too_young == 1 and result.files_referenced == len(referenced)
    all_referenced_exist(table)
    assert table_state(table) == state


def test_files_released_by_compaction_and_expiry_become_orphans(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P, small_files=True)
    for step in range(4):
        merge(table, [(f"k{step}", 0, step)], step, DAYS[step])
    old_files = data_files(table)
    policy = MaintenancePolicy(
        expire_older_than=dt.timedelta(0),
        compact=True,
        target_file_size=SMALL,
        rewrite_manifests=True,
        remove_orphans=True,
        orphan_older_than=dt.timedelta(0),
    )
    report = maintain(table, policy, now=_later())
    assert report.compaction.files_removed == 4 and report.manifests.manifests_after == 1
    assert report.expiry.snapshots_expired and len(table.refresh().snapshots()) == 1
    assert {local(f) for f in old_files} <= {local(f) for f in report.orphans.files_removed}
    assert not any(local(f).exists() for f in old_files)
    assert sorted(table_state(table)) == [f"k{s}" for s in range(4)]
    assert ingested_partitions(table, ASSET) == set(DAYS[:4])
    assert report.as_dict()["compaction"]["files_removed"] == 4


# --- losing a race ----------------------------------------------------------------------------

STEPS = {
    "compact": ("rewrite_groups", lambda t: compact_files(t, target_file_size=SMALL)),
    "manifests": ("_manifest_bins", lambda t: rewrite_manifests(t)),
    "expire": ("plan_expiry", lambda t: expire_snapshots(t, older_than=dt.timedelta(0), retain_last=1, now=_later())),
}


@pytest.mark.parametrize("writer_branch", ["main", "dev"])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_a_step_that_loses_to_a_writer_replans_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, writer_branch: str
) -> None:
    """A writer commits (on main, or on another branch) between the step's plan and its commit."""
    import cascade.maintenance as maintenance

    catalog = new_catalog(tmp_path)
    table = new_table(catalog, BY_P, small_files=True)
    for number in range(3):
        merge(table, [(f"k{number}", 0, number)], number, DAYS[number])
    create_branch(table, "dev")
    writer = catalog.load_table(table.name())
    model = Model(table_state(table))
    phase, run = STEPS[step]
    planned = getattr(maintenance, phase)
    calls = []

    def plan_then_a_writer_commits(*args, **kwargs):
        result = planned(*args, **kwargs)
        if not calls:
            merge(writer.refresh(), [("k0", 0, 50), ("new", 0, 1)], 10, DAYS[5], branch=writer_branch)
            if writer_branch == "main":
                model.apply([("k0", 0, 50), ("new", 0, 1)], 10)
        calls.append(1)
        return result

    monkeypatch.setattr(maintenance, phase, plan_then_a_writer_commits)
    result = run(table)

    assert result.attempts == 2  # lost once, planned again, committed
    assert table_state(table) == model.rows
    assert ingested_partitions(table.refresh(), ASSET, writer_branch) >= {DAYS[5]}
    all_referenced_exist(table)
    data = {str(p) for p in (local(table.location()) / "data").rglob("*.parquet")}
    # the losing attempt removed the data files it wrote (the manifests a lost commit wrote are
    # left, as for a merge that loses; orphan removal takes them once past its window)
    assert data - referenced_files(table.refresh()) == set()


def test_a_partition_of_many_small_files_is_compacted_a_target_at_a_time(tmp_path: Path) -> None:
    table = new_table(new_catalog(tmp_path), BY_P)
    for step in range(8):
        merge(table, [(f"k{step}-{i}", 0, i) for i in range(20)], step, DAYS[step % 7])
    sizes = [os.path.getsize(local(f)) for f in data_files(table)]
    target = int(max(sizes) * 3.5)  # about three files' worth per run
    plan = plan_compaction(table, branch="main", target_file_size=target)
    assert len(plan.groups) >= 2 and plan.partitions == 1
    assert all(sum(f.file_size_in_bytes for f in group) <= target for group in plan.groups)
    state = table_state(table)
    result = compact_files(table, target_file_size=target)
    assert result.files_added == len(plan.groups) and result.files_removed == len(plan.files)
    assert table_state(table) == state
