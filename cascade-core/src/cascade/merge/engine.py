"""One merge attempt loop: plan against the head, write, commit once, and re-plan after a conflict."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH

from cascade.errors import MergeConflictError, SchemaMismatchError
from cascade.expiry import expire_on_commit
from cascade.faults import crash_point
from cascade.merge.batch import prepare_batch
from cascade.merge.commit import (
    COMMIT_ID,
    CarriedFiles,
    NetChanges,
    commit_outcome_unknown,
    commit_plan,
    delete_files,
    find_commit,
    last_sequence_number,
    pause_after_conflict,
    write_files,
)
from cascade.merge.conflicts import Fork, rebase_conflict
from cascade.merge.plan import BeforeCommit, MergePlan, PartitionReplace, plan_merge
from cascade.snapshots import commit_overwrite
from cascade.telemetry import traced


@dataclass(frozen=True)
class MergeOutcome:
    """What one ``merge_into`` did."""

    rows_in: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_deduplicated: int
    files_considered: int
    files_read: int
    files_rewritten: int
    files_added: int
    bytes_read: int
    bytes_written: int
    snapshot_id: int | None
    commit_attempts: int
    rows_deleted: int = 0

    @property
    def committed(self) -> bool:
        return self.commit_attempts > 0 and (self.files_added > 0 or self.files_rewritten > 0)

    @classmethod
    def nothing(cls, snapshot_id: int | None = None) -> MergeOutcome:
        """The outcome of a merge that had no rows to merge."""
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, snapshot_id, 0)


def merge_batch(
    table: Table,
    batch: pa.Table,
    keys: tuple[str, ...],
    *,
    branch: str = MAIN_BRANCH,
    snapshot_properties: Mapping[str, str] | None = None,
    stable_partitions: bool = False,
    max_attempts: int = 20,
    before_commit: BeforeCommit | None = None,
    replace: PartitionReplace | None = None,
    last_check: Callable[[], None] | None = None,
    keys_distinct: bool = False,
    disjoint_files: frozenset[str] = frozenset(),
    carried: CarriedFiles | None = None,
    defer_inserts: bool = False,
    changes: NetChanges | None = None,
) -> MergeOutcome:
    """Merge one in-memory batch in one snapshot on ``branch``: see :func:`cascade.merge.merge_into`.

    ``disjoint_files`` (paths) are known to hold none of the batch's keys and are not read.
    ``carried`` files (written for earlier batches, not committed yet) are added by this merge's
    commit. With ``defer_inserts``, a plan that only adds rows is not committed: its files are
    written in the background and join ``carried`` (a chunked merge of distinct keys, where no
    later chunk needs to read them). ``changes`` records what the commit deleted and added.
    """
    schema = table.schema()
    missing = [k for k in keys if k not in schema.column_names]
    if missing:
        raise SchemaMismatchError(f"table {table.name()}: unique key column(s) {missing} not in the table schema")
    rows = prepare_batch(batch, schema, keys, keys_distinct=keys_distinct)
    if changes is not None:
        changes.depends_on_keys(schema, rows, keys)
    deduplicated = batch.num_rows - rows.num_rows
    properties = {**(snapshot_properties or {}), COMMIT_ID: uuid.uuid4().hex}
    attempt_seconds = 0.0
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            pause_after_conflict(attempt, attempt_seconds)
            table = table.refresh()
        started = time.monotonic()
        planned_at = last_sequence_number(table)
        plan = plan_merge(
            table,
            rows,
            keys,
            branch=branch,
            stable_partitions=stable_partitions,
            replace=replace,
            disjoint_files=disjoint_files,
        )
        if plan.changes_nothing and not carried:
            head = table.snapshot_by_name(branch) or table.snapshot_by_name(MAIN_BRANCH)
            return _outcome(plan, batch.num_rows, deduplicated, [], head.snapshot_id if head else None, attempt - 1)
        if before_commit is not None:
            before_commit(plan)
        if defer_inserts and carried is not None and plan.adds_only:
            carried.write(plan.rows_to_write, keys)
            return _outcome(plan, batch.num_rows, deduplicated, [], None, attempt - 1)
        earlier = carried.files() if carried is not None else []
        written = write_files(table, plan.rows_to_write, keys)
        crash_point("before-commit")
        if last_check is not None:
            try:
                last_check()
            except BaseException:
                delete_files(table, written)
                raise
        added = [*earlier, *written]
        try:
            with traced("commit", attempt=attempt, table=".".join(table.name()), branch=branch) as span:
                snapshot_id = commit_plan(table, plan, added, branch=branch, properties=properties)
                span.set_attributes({"cascade.snapshot_id": snapshot_id, "cascade.files_added": len(added)})
        except (CommitFailedException, ValidationException):
            delete_files(table, written)
            attempt_seconds = time.monotonic() - started
            continue
        except ValueError:
            delete_files(table, written)
            attempt_seconds = time.monotonic() - started
            # pyiceberg applies a snapshot planned on stale metadata after a commit on another
            # branch and fails with ValueError ("sequence number ... older than last sequence
            # number") instead of CommitFailedException: a conflict exactly when the table moved.
            if last_sequence_number(table.refresh()) != planned_at:
                continue
            raise
        except Exception as error:
            # The catalog may have applied the commit before failing to say so (a timeout, a
            # lost connection, a 5xx): look for this merge's commit id before anything else.
            checked, landed = find_commit(table, branch, properties[COMMIT_ID])
            if landed is None:
                if checked:  # it did not land: its files are ours to remove
                    delete_files(table, written)
                if commit_outcome_unknown(error) and attempt < max_attempts:
                    continue
                raise
            snapshot_id = landed
        if carried is not None:
            carried.committed()
        if changes is not None:
            changes.record(plan.replaced_files, added)
        crash_point("after-commit")
        expire_on_commit(table)
        return _outcome(plan, batch.num_rows, deduplicated, added, snapshot_id, attempt)
    raise MergeConflictError(
        f"table {'.'.join(table.name())}, branch {branch!r}: concurrent commits invalidated the write "
        f"{max_attempts} times; nothing was committed, try again"
    )


def commit_carried(
    table: Table,
    carried: CarriedFiles,
    *,
    branch: str,
    snapshot_properties: Mapping[str, str] | None = None,
    max_attempts: int = 20,
    last_check: Callable[[], None] | None = None,
    changes: NetChanges | None = None,
) -> MergeOutcome:
    """Commit files written but not committed yet, through the same guarded commit as a merge
    (an empty batch whose commit carries them); the rows they hold were counted where written."""
    return merge_batch(
        table,
        table.schema().as_arrow().empty_table(),
        (),
        branch=branch,
        snapshot_properties=snapshot_properties,
        max_attempts=max_attempts,
        last_check=last_check,
        keys_distinct=True,
        carried=carried,
        changes=changes,
    )


def publish_changes(
    table: Table,
    changes: NetChanges,
    *,
    branch: str,
    fork: Fork,
    snapshot_properties: Mapping[str, str] | None = None,
    max_attempts: int = 20,
) -> int:
    """Commit a chunked merge's net ``changes`` onto ``branch`` as one snapshot; returns its id.

    One snapshot, not the staging branch's one per chunk: no reader of the branch's history, time
    travel included, ever sees part of the batch. A commit elsewhere in the table (another branch)
    is no conflict: the publish is planned again on the new metadata. Neither is a commit on
    ``branch`` since the ``fork`` outside what the merge depends on (``changes.regions``: its
    chunks' key ranges, a replaced day), such as another partition's day: the changes land on top
    of it. Any other move of the branch raises :class:`CommitFailedException` (see
    :func:`cascade.merge.conflicts.rebase_conflict`).
    """
    properties = {**(snapshot_properties or {}), COMMIT_ID: uuid.uuid4().hex}
    attempt_seconds = 0.0
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            pause_after_conflict(attempt, attempt_seconds)
        started = time.monotonic()
        table = table.refresh()  # the latest metadata: the staging commits raised its sequence number
        head = table.snapshot_by_name(branch)
        if head is None:
            raise CommitFailedException(f"branch {branch!r} was removed")
        if head.snapshot_id != fork.snapshot_id:
            conflict = rebase_conflict(table, fork, head, changes)
            if conflict is not None:
                raise CommitFailedException(f"branch {branch!r} moved since the fork: {conflict}")
        planned_at = last_sequence_number(table)
        try:
            with traced("commit", attempt=attempt, table=".".join(table.name()), branch=branch):
                snapshot_id = commit_overwrite(
                    table,
                    branch=branch,
                    deleted=changes.deleted.values(),
                    added=changes.added.values(),
                    snapshot_properties=properties,
                )
        except (CommitFailedException, ValidationException):
            attempt_seconds = time.monotonic() - started
            continue  # the next attempt checks the branch head: moved is a conflict, elsewhere is not
        except ValueError:
            attempt_seconds = time.monotonic() - started
            if last_sequence_number(table.refresh()) != planned_at:  # planned on stale metadata: see merge_batch
                continue
            raise
        except Exception:
            _, landed = find_commit(table, branch, properties[COMMIT_ID])  # it may have landed all the same
            if landed is None:
                raise
            snapshot_id = landed
        expire_on_commit(table)
        return snapshot_id
    raise CommitFailedException(f"concurrent commits invalidated the publish to {branch!r} {max_attempts} times")


def _outcome(
    plan: MergePlan, rows_in: int, deduplicated: int, written: list[DataFile], snapshot_id: int | None, attempts: int
) -> MergeOutcome:
    return MergeOutcome(
        rows_in=rows_in,
        rows_inserted=plan.rows_inserted,
        rows_updated=plan.rows_updated,
        rows_unchanged=plan.rows_unchanged,
        rows_deduplicated=deduplicated,
        files_considered=plan.files_considered,
        files_read=plan.files_read,
        files_rewritten=len(plan.replaced_files) if written else 0,
        files_added=len(written),
        bytes_read=plan.bytes_read,
        bytes_written=sum(f.file_size_in_bytes for f in written),
        snapshot_id=snapshot_id,
        commit_attempts=attempts,
        rows_deleted=plan.rows_deleted,
    )
