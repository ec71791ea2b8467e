"""Chunked merges: a batch larger than memory, merged chunk by chunk and published at once."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRef
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from cascade.catalog import initialize_main
from cascade.errors import MergeConflictError
from cascade.merge.commit import CarriedFiles, NetChanges, with_retries
from cascade.merge.conflicts import Fork
from cascade.merge.engine import MergeOutcome, commit_carried, merge_batch, publish_changes
from cascade.merge.plan import BeforeCommit, PartitionReplace
from cascade.naming import STAGING_BRANCH_PREFIX
from cascade.pyiceberg_compat import move_branch

STAGING_GRACE = dt.timedelta(days=1)
"""A chunked merge's staging branch older than this belongs to a merge that died (kill -9, a lost
machine) and is dropped by the next chunked merge of the table or its maintenance. A live merge is
far younger: a run's deadline is minutes."""


def staging_branch_name(now_ms: int) -> str:
    return f"{STAGING_BRANCH_PREFIX}{now_ms}-{uuid.uuid4().hex[:8]}"


def abandoned_staging_branches(table: Table, now: dt.datetime, grace: dt.timedelta = STAGING_GRACE) -> list[str]:
    """Staging branches of chunked merges created before ``now - grace`` (by the time in their name;
    for names without one, by their head snapshot, which is no younger than the branch)."""
    cutoff_ms = (now - grace).timestamp() * 1000
    found = []
    for name, ref in table.metadata.refs.items():
        if not name.startswith(STAGING_BRANCH_PREFIX):
            continue
        stamp = name[len(STAGING_BRANCH_PREFIX) :].split("-", 1)[0]
        if stamp.isdigit() and len(stamp) == 13:  # milliseconds; the old names held 12 hex digits
            created_ms = int(stamp)
        else:
            snapshot = table.snapshot_by_id(ref.snapshot_id)
            created_ms = snapshot.timestamp_ms if snapshot is not None else 0
        if created_ms < cutoff_ms:
            found.append(name)
    return sorted(found)


def drop_abandoned_staging_branches(table: Table, now: dt.datetime | None = None) -> list[str]:
    """Drop the staging branches merges left behind (their snapshots and files then expire as usual)."""
    abandoned = abandoned_staging_branches(table, now or dt.datetime.now(dt.UTC))
    if abandoned:
        snapshots = table.manage_snapshots()
        for name in abandoned:
            snapshots = snapshots.remove_branch(name)
        snapshots.commit()
    return abandoned


def merge_in_chunks(
    table: Table,
    batch: pa.Table | pa.RecordBatchReader | Iterable[pa.Table],
    keys: tuple[str, ...],
    *,
    chunk_rows: int,
    branch: str = MAIN_BRANCH,
    snapshot_properties: Mapping[str, str] | None = None,
    stable_partitions: bool = False,
    max_attempts: int = 20,
    before_commit: BeforeCommit | None = None,
    replace: PartitionReplace | None = None,
    last_check: Callable[[], None] | None = None,
    keys_distinct: bool | Callable[[], bool] = False,
) -> MergeOutcome:
    """Merge a batch of any size holding at most ``chunk_rows`` batch rows in memory at once.

    Chunks are merged in order onto a private staging branch forked from ``branch``'s head, so
    the dict semantics hold across chunks (a later chunk's record wins). Then what the chunks
    changed, netted, lands on ``branch`` as one snapshot (a branch that has not moved moves to the
    staging head instead when that is one snapshot): readers of ``branch``, and of its history,
    see all of the batch or none of it. Commits on ``branch`` since the fork that touched none of
    the rows the merge wrote (another partition's day) stay, the batch landing on top of them; any
    other move of the branch drops the staging branch and raises :class:`MergeConflictError`: a
    stream cannot be replayed, so the caller retries the run. Counts are summed over chunks, so a key inserted by
    one chunk and changed by a later one counts once as inserted and once as updated; likewise a
    key that changes in one chunk and changes back in a later one ends with its stored values but
    this run's ``_cascade_ingested_at`` (remembering every key's starting row would defeat bounded
    memory).

    ``batch`` may also be an iterable of tables, merged one by one as given (the caller bounds
    their size). A ``replace`` must carry the whole batch's keys (``keep``): the first chunk
    deletes the partition's rows that none of the chunks holds.

    ``keys_distinct`` may be a callable, asked as each chunk arrives: once it says ``False``, that
    chunk and the rest are merged as chunks whose keys may repeat, after the files carried so far
    are committed (the runner's ``after_extract`` hooks may add or change rows).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if replace is not None and replace.keep is None:
        raise ValueError("a partition replace merged in chunks needs the whole batch's keys (PartitionReplace.keep)")
    if isinstance(batch, pa.Table | pa.RecordBatchReader):
        reader = batch if isinstance(batch, pa.RecordBatchReader) else batch.to_reader(max_chunksize=chunk_rows)
        chunks: Iterable[pa.Table] = _chunks(reader, chunk_rows)
    else:
        chunks = batch
    table = initialize_main(table.refresh())
    if replace is not None:  # an empty batch still replaces its partition: with nothing
        chunks = _or_empty(chunks, table.schema().as_arrow().empty_table())
    with contextlib.suppress(CommitFailedException):  # housekeeping; another merge may be dropping them too
        drop_abandoned_staging_branches(table)
    table, start_ref, head, staging = _fork_staging(table, branch, max_attempts)
    fork = Fork(head.snapshot_id, table.spec().spec_id)
    outcomes: list[MergeOutcome] = []
    # With every key of the batch distinct, a chunk that only inserts writes files holding its own
    # keys alone: no later chunk needs to read them (with random keys, every file's key range
    # would overlap every later chunk's, and each chunk would read all the chunks before it), so
    # they need not be committed on their own either. They are carried to the next chunk's commit,
    # or the last one: one snapshot for a day that only inserts, not one per chunk.
    carried = CarriedFiles(table)
    changes = NetChanges()
    if replace is not None:
        changes.depends_on_day(table.schema(), replace)
    still_distinct = keys_distinct if callable(keys_distinct) else lambda: bool(keys_distinct)
    vouched = True

    def commit_what_is_carried() -> None:
        if carried:
            outcomes.append(
                commit_carried(
                    table.refresh(),
                    carried,
                    branch=staging,
                    snapshot_properties=snapshot_properties,
                    max_attempts=max_attempts,
                    last_check=last_check,
                    changes=changes,
                )
            )

    try:
        for chunk in chunks:
            if vouched and not still_distinct():
                vouched = False
                commit_what_is_carried()  # what follows may hold their keys: it must see them
            outcome = merge_batch(
                table,
                chunk,
                keys,
                branch=staging,
                snapshot_properties=snapshot_properties,
                stable_partitions=stable_partitions,
                max_attempts=max_attempts,
                before_commit=before_commit,
                replace=None if outcomes else replace,
                last_check=last_check,
                keys_distinct=vouched,
                disjoint_files=frozenset(carried.landed) if vouched else frozenset(),
                carried=carried,
                defer_inserts=vouched,
                changes=changes,
            )
            outcomes.append(outcome)
            # Arrow's allocator keeps freed pages for reuse; hand them back between chunks so the
            # process's peak (what a pod's memory limit sees) stays near one chunk's working set.
            pa.default_memory_pool().release_unused()
        table = table.refresh()
        staged = _commits_between(table, staging, head.snapshot_id)
        now_at = table.metadata.refs.get(branch)
        unmoved = (now_at.snapshot_id if now_at else None) == (start_ref.snapshot_id if start_ref else None)
        if staged == 1 and not carried and unmoved:  # the branch moves to the staging branch's one snapshot
            staged_head = table.snapshot_by_name(staging)
            assert staged_head is not None
            if last_check is not None:
                last_check()
            move_branch(table, branch, staged_head.snapshot_id, expected=start_ref.snapshot_id if start_ref else None)
        elif carried or staged:
            # the day as one snapshot on the branch, whatever its chunks committed on the way
            changes.record((), carried.files())
            if last_check is not None:
                last_check()  # the publish is the commit readers see
            if start_ref is None:  # a new branch starts at the fork point, then takes the day
                move_branch(table, branch, head.snapshot_id, expected=None)
            try:
                publish_changes(
                    table,
                    changes,
                    branch=branch,
                    fork=fork,
                    snapshot_properties=snapshot_properties,
                    max_attempts=max_attempts,
                )
            except CommitFailedException:
                if start_ref is None:
                    _drop_if_at(table, branch, head.snapshot_id)
                raise
            except Exception:
                carried.committed()  # it may have landed: an orphaned file costs space, a deleted one loses rows
                raise
            carried.committed()
    except CommitFailedException as conflict:
        raise MergeConflictError(
            f"table {'.'.join(table.name())}, branch {branch!r} moved while a chunked merge was staged "
            f"({conflict}); try again"
        ) from None
    finally:
        carried.discard()  # files written and never committed
        with contextlib.suppress(Exception):  # never mask the merge's own outcome or error
            _drop_staging(table, staging, max_attempts)
    return _sum_outcomes(outcomes, table.refresh().snapshot_by_name(branch))


def _fork_staging(table: Table, branch: str, max_attempts: int) -> tuple[Table, SnapshotRef | None, Snapshot, str]:
    """A new staging branch at ``branch``'s head (``main``'s, for a branch that does not exist yet).

    Returns the table as forked, ``branch``'s ref then, the fork point and the staging branch's
    name. A commit landing anywhere in the table meanwhile makes the catalog refuse the fork;
    nothing is staged yet, so the fork is tried again at the head as it is now.
    """

    def fork(current: Table) -> tuple[Table, SnapshotRef | None, Snapshot, str]:
        head = current.snapshot_by_name(branch) or current.snapshot_by_name(MAIN_BRANCH)
        assert head is not None
        staging = staging_branch_name(int(time.time() * 1000))
        start_ref = current.metadata.refs.get(branch)
        current.manage_snapshots().create_branch(head.snapshot_id, staging).commit()
        return current, start_ref, head, staging

    forked, _ = with_retries(
        table,
        max_attempts,
        fork,
        gave_up=lambda: MergeConflictError(
            f"table {'.'.join(table.name())}: concurrent commits refused a chunked merge's staging branch "
            f"{max_attempts} times; nothing was committed, try again"
        ),
    )
    return forked


def _drop_staging(table: Table, staging: str, max_attempts: int) -> None:
    """Remove the merge's staging branch, again after losing a race with another commit (a branch
    left behind keeps its snapshots and files until a later merge drops it, a day on)."""
    with_retries(
        table,
        max_attempts,
        lambda current: current.manage_snapshots().remove_branch(staging).commit(),
        gave_up=lambda: MergeConflictError(f"staging branch {staging!r}: concurrent commits refused its removal"),
    )


def _drop_if_at(table: Table, branch: str, snapshot_id: int) -> None:
    """Remove a branch this merge created, unless it has moved since (someone else uses it now)."""
    with contextlib.suppress(Exception):  # the merge's own conflict is the error to report
        fresh = table.refresh()
        ref = fresh.metadata.refs.get(branch)
        if ref is not None and ref.snapshot_id == snapshot_id:
            fresh.manage_snapshots().remove_branch(branch).commit()


def _commits_between(table: Table, branch: str, fork: int) -> int:
    """How many snapshots ``branch`` holds above its ``fork`` point."""
    count = 0
    for snapshot in ancestors_of(table.snapshot_by_name(branch), table.metadata):
        if snapshot.snapshot_id == fork:
            break
        count += 1
    return count


def _chunks(reader: pa.RecordBatchReader, chunk_rows: int) -> Iterable[pa.Table]:
    pending: list[pa.RecordBatch] = []
    size = 0
    for record_batch in reader:
        while record_batch.num_rows:
            take = record_batch.slice(0, chunk_rows - size)
            pending.append(take)
            size += take.num_rows
            record_batch = record_batch.slice(take.num_rows)
            if size == chunk_rows:
                yield pa.Table.from_batches(pending)
                pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _or_empty(chunks: Iterable[pa.Table], empty: pa.Table) -> Iterator[pa.Table]:
    """``chunks``, or one ``empty`` chunk when there are none."""
    taken = False
    for chunk in chunks:
        taken = True
        yield chunk
    if not taken:
        yield empty


def _sum_outcomes(outcomes: list[MergeOutcome], head: Snapshot | None) -> MergeOutcome:
    def total(name: str) -> int:
        return sum(getattr(o, name) for o in outcomes)

    return MergeOutcome(
        rows_in=total("rows_in"),
        rows_inserted=total("rows_inserted"),
        rows_updated=total("rows_updated"),
        rows_unchanged=total("rows_unchanged"),
        rows_deduplicated=total("rows_deduplicated"),
        files_considered=total("files_considered"),
        files_read=total("files_read"),
        files_rewritten=total("files_rewritten"),
        files_added=total("files_added"),
        bytes_read=total("bytes_read"),
        bytes_written=total("bytes_written"),
        snapshot_id=head.snapshot_id if head else None,
        commit_attempts=total("commit_attempts"),
        rows_deleted=total("rows_deleted"),
    )
