"""The commit protocol: write a plan's files, commit them in one guarded snapshot, and know what
happened when the catalog could not say (a timeout, a lost connection).

Every commit carries a commit id in its snapshot summary, so a writer unsure of its outcome
finds its own snapshot in the branch's recent history instead of committing twice.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import DataFile
from pyiceberg.schema import Schema
from pyiceberg.table import Table

from cascade.merge.plan import MergePlan, PartitionReplace
from cascade.merge.pruning import KeyRange, day_interval, key_intervals
from cascade.pyiceberg_compat import write_data_files
from cascade.snapshots import commit_overwrite

COMMIT_ID = "cascade.commit-id"  # in every snapshot summary: finds a commit whose outcome was unknown
HISTORY_SEARCH_DEPTH = 50  # snapshots back from the head searched for it
CONFLICT_PAUSE = 0.02  # least back-off base, seconds; see pause_after_conflict
CONFLICT_PAUSE_MAX = 10.0
R = TypeVar("R")


def write_files(table: Table, rows: pa.Table, keys: Sequence[str] = ()) -> list[DataFile]:
    """Write ``rows`` as new data files of ``table`` (partitioned by its spec); commits nothing.

    ``keys``: the unique key, when each of its values appears once in ``rows``.
    """
    if rows.num_rows == 0:
        return []
    return write_data_files(table.metadata, rows, table.io, keys)


class NetChanges:
    """What a chunked merge's commits on its staging branch changed, netted over the chunks: the
    fork's files deleted, and the files written that are still live (a file one chunk writes and
    a later one replaces is in neither). Committed as one snapshot on the target branch.

    ``regions`` are the parts of the table the merge's outcome depends on: each chunk's key
    intervals, and a replaced day. Another writer's commit outside all of them leaves the
    changes valid on top of it (see :mod:`cascade.merge.conflicts`)."""

    def __init__(self) -> None:
        self.deleted: dict[str, DataFile] = {}
        self.added: dict[str, DataFile] = {}
        self.regions: list[list[KeyRange]] = []

    def depends_on_keys(self, schema: Schema, rows: pa.Table, keys: tuple[str, ...]) -> None:
        """The keys of ``rows`` (a chunk as the table holds it), whether or not the merge changed them."""
        if rows.num_rows:
            self.regions.append(key_intervals(schema, rows, keys))

    def depends_on_day(self, schema: Schema, replace: PartitionReplace) -> None:
        """The replaced day: every row of it the batch lacks is deleted, whatever its key."""
        self.regions.append([day_interval(schema, replace)])

    def record(self, deleted: Iterable[DataFile], added: Iterable[DataFile]) -> None:
        for data_file in deleted:
            if self.added.pop(data_file.file_path, None) is None:
                self.deleted[data_file.file_path] = data_file
        for data_file in added:
            self.added[data_file.file_path] = data_file


class CarriedFiles:
    """Data files of a chunked merge's chunks that only insert, not committed yet.

    Each such chunk's files are written on a background thread while the next chunk is read,
    conformed and planned (the second core was idle while a chunk was written); one write at a
    time, so memory holds at most one chunk more. The next commit adds them (``files`` waits for
    the write in flight and raises its error); ``landed`` keeps the paths of those committed.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._files: list[DataFile] = []
        self._pending: Future[list[DataFile]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.landed: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self._files) or self._pending is not None

    def write(self, rows: pa.Table, keys: Sequence[str] = ()) -> None:
        self._settle()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascade-write")
        self._pending = self._pool.submit(write_files, self.table, rows, keys)

    def add(self, files: Iterable[DataFile]) -> None:
        """Files already written, to go with the next commit."""
        self._files.extend(files)

    def files(self) -> list[DataFile]:
        self._settle()
        return list(self._files)

    def committed(self) -> None:
        self.landed.update(f.file_path for f in self._files)
        self._files.clear()

    def discard(self) -> None:
        """Remove the files written and never committed; waits for a write in flight."""
        with contextlib.suppress(Exception):  # the merge's own error, if any, is the one to report
            self._settle()
        delete_files(self.table, self._files)
        self._files.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _settle(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._files.extend(pending.result())


def commit_plan(
    table: Table, plan: MergePlan, written: Iterable[DataFile], *, branch: str, properties: Mapping[str, str]
) -> int:
    """Replace the plan's files with ``written`` in one snapshot on ``branch``; returns its id.

    Exactly one attempt, asserting the branch head is the one the plan read (see
    :func:`cascade.snapshots.commit_overwrite`); Cascade re-plans against a new head instead.
    The snapshot keeps its manifest count bounded by merging small manifests.
    """
    return commit_overwrite(
        table, branch=branch, deleted=plan.replaced_files, added=written, snapshot_properties=properties
    )


def delete_files(table: Table, files: Iterable[DataFile]) -> None:
    for data_file in files:
        with contextlib.suppress(OSError):  # an orphan file costs space, never correctness
            table.io.delete(data_file.file_path)


def commit_outcome_unknown(error: BaseException) -> bool:
    """Errors after which the commit may or may not have happened, and trying again may succeed."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"CommitStateUnknownException", "ServerError", "OperationalError", "OSError", "TimeoutError"})


def find_commit(table: Table, branch: str, commit_id: str) -> tuple[bool, int | None]:
    """Whether the history could be read, and the snapshot on ``branch`` carrying ``commit_id``.

    ``(False, None)``: the catalog cannot be read either, so the commit may have landed and its
    data files must stay (an orphan costs space; deleting a committed file loses data).
    """
    try:
        table = table.refresh()
    except Exception:
        return False, None
    snapshot = table.snapshot_by_name(branch)
    for _ in range(HISTORY_SEARCH_DEPTH):
        if snapshot is None:
            break
        if snapshot.summary is not None and snapshot.summary.get(COMMIT_ID) == commit_id:
            return True, snapshot.snapshot_id
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return True, None


def pause_after_conflict(attempt: int, attempt_seconds: float) -> None:
    """Back off after losing a commit race: random, growing, scaled to how long an attempt takes.

    A writer that lost waits on average about one attempt's length (doubling with each loss),
    so the writers that collided spread out instead of re-planning in lock-step.
    """
    base = max(CONFLICT_PAUSE, attempt_seconds)
    time.sleep(random.uniform(0, min(CONFLICT_PAUSE_MAX, base * 2 ** (attempt - 2))))


def with_retries(
    table: Table, attempts: int, attempt: Callable[[Table], R], *, gave_up: Callable[[], Exception]
) -> tuple[R, int]:
    """Run ``attempt`` on the table as it is now until it commits without a conflict; returns its
    result and the number of tries, or raises ``gave_up()`` after ``attempts`` conflicts."""
    attempt_seconds = 0.0
    for number in range(1, attempts + 1):
        if number > 1:
            pause_after_conflict(number, attempt_seconds)
        current = table.refresh()
        started = time.monotonic()
        try:
            return attempt(current), number
        except CommitFailedException:
            pass
        except ValueError:
            # pyiceberg reports some conflicts (a snapshot planned on stale metadata, a snapshot
            # another expiry removed first) as ValueError: a conflict exactly when the table moved.
            # (Table.refresh() updates in place, so the fresh state is loaded as a new object.)
            if current.catalog.load_table(current.name()).metadata_location == current.metadata_location:
                raise
        attempt_seconds = time.monotonic() - started
    raise gave_up()


def last_sequence_number(table: Table) -> int:
    return int(getattr(table.metadata, "last_sequence_number", 0))  # format v1 has none
