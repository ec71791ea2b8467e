"""The merge engine: an atomic upsert whose cost follows the data it touches, not the table.

``merge_into`` gives the table the semantics of a dict keyed by the unique key:
within a batch the last record wins; a stored key is replaced by the batch's record, unless
all its non-metadata columns are equal (then it is *unchanged* and keeps its stored
``_cascade_ingested_at``); a batch that changes nothing commits nothing.

How cost is kept to the touched data:
1. *partition pruning*: when exact (every partition source column is in the key, or the asset
   declares its partitions stable), only data files in the batch's partitions are considered;
2. *key-range pruning*: a file whose key min/max (from the manifests) cannot hold any batch key
   is skipped without being opened;
3. *key-column probe*: candidate files are opened for their key columns only; a file is read
   whole and rewritten only if it really holds a key the batch changes.
The rewritten files are replaced and the new rows added in one overwrite snapshot, on the
requested branch. A concurrent commit makes pyiceberg's validation fail; the merge is then
planned again against the new snapshot, within ``max_attempts``.

Where each part lives: :mod:`~cascade.merge.batch` (one row per key), :mod:`~cascade.merge.pruning`
(candidate files from the manifests), :mod:`~cascade.merge.plan` (the files to replace and rows to
write), :mod:`~cascade.merge.commit` (the guarded commit and finding an unknown outcome),
:mod:`~cascade.merge.engine` (the attempt loop) and :mod:`~cascade.merge.chunked` (batches
larger than memory, published at once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH

from cascade.catalog import ensure_branch
from cascade.conformance import conform
from cascade.errors import MergeConflictError
from cascade.merge.chunked import merge_in_chunks
from cascade.merge.commit import CarriedFiles, with_retries, write_files
from cascade.merge.engine import MergeOutcome, commit_carried, merge_batch
from cascade.merge.plan import BeforeCommit, MergePlan, PartitionReplace

__all__ = [
    "BeforeCommit",
    "MergeOutcome",
    "MergePlan",
    "PartitionReplace",
    "append_into",
    "merge_in_chunks",
    "merge_into",
]


def merge_into(
    table: Table,
    batch: pa.Table | pa.RecordBatchReader | Iterable[pa.Table],
    unique_key: str | Sequence[str],
    *,
    branch: str = MAIN_BRANCH,
    snapshot_properties: Mapping[str, str] | None = None,
    stable_partitions: bool = False,
    max_attempts: int = 20,
    before_commit: BeforeCommit | None = None,
    chunk_rows: int | None = None,
    replace: PartitionReplace | None = None,
    last_check: Callable[[], None] | None = None,
    keys_distinct: bool | Callable[[], bool] = False,
) -> MergeOutcome:
    """Upsert ``batch`` into ``table`` on ``unique_key`` in one atomic snapshot on ``branch``.

    With ``replace``, the rows of that partition whose keys the batch lacks are deleted in the
    same snapshot (an empty batch empties the partition). A ``branch`` that does not exist yet
    starts from main's head.

    ``stable_partitions`` declares that a key's partition columns never change, so pruning to
    the batch's partitions is exact even when the partition source is not part of the key.
    ``before_commit`` is called with the plan just before committing; raising there aborts
    the merge with nothing committed. ``last_check`` is called immediately before the commit
    request, after the data files are written (the runner checks its deadline there); raising
    there removes the written files and aborts with nothing committed.

    ``chunk_rows`` bounds memory for batches larger than memory (and an iterable of tables is
    merged as those chunks): see :func:`merge_in_chunks`. ``keys_distinct`` vouches that no key
    appears twice in the whole batch (the runner removes superseded records first), which skips
    the de-duplication; a wrong vouch stores the key twice. Merged in chunks, it may be a callable
    asked as each chunk arrives (see :func:`merge_in_chunks`).
    """
    keys = (unique_key,) if isinstance(unique_key, str) else tuple(unique_key)
    if chunk_rows is not None:
        return merge_in_chunks(
            table,
            batch,
            keys,
            chunk_rows=chunk_rows,
            branch=branch,
            snapshot_properties=snapshot_properties,
            stable_partitions=stable_partitions,
            max_attempts=max_attempts,
            before_commit=before_commit,
            replace=replace,
            last_check=last_check,
            keys_distinct=keys_distinct,
        )
    if isinstance(batch, pa.RecordBatchReader):
        batch = batch.read_all()
    if not isinstance(batch, pa.Table):
        raise TypeError("an iterable of tables is merged in chunks: pass chunk_rows")
    if branch != MAIN_BRANCH and branch not in table.metadata.refs:  # a new branch starts from main
        table, _ = with_retries(
            table,
            max_attempts,
            lambda current: ensure_branch(current, branch),
            gave_up=lambda: MergeConflictError(f"table {'.'.join(table.name())}: could not create branch {branch!r}"),
        )
    return merge_batch(
        table,
        batch,
        keys,
        branch=branch,
        snapshot_properties=snapshot_properties,
        stable_partitions=stable_partitions,
        max_attempts=max_attempts,
        before_commit=before_commit,
        replace=replace,
        last_check=last_check,
        keys_distinct=keys_distinct if isinstance(keys_distinct, bool) else keys_distinct(),
    )


def append_into(
    table: Table,
    rows: pa.Table,
    *,
    branch: str = MAIN_BRANCH,
    snapshot_properties: Mapping[str, str] | None = None,
    max_attempts: int = 20,
    where: str = "batch",
) -> MergeOutcome:
    """Add ``rows`` to ``table`` as they are, in one snapshot on ``branch``: no key, nothing read or
    replaced (a log's rows). The rows are conformed to the table's schema first (``where`` names
    them in an error).

    The commit is a merge's: guarded, tried again after a concurrent commit, looked for when the
    catalog could not say whether it landed, and followed by the table's history upkeep
    (:func:`cascade.expire_on_commit`). pyiceberg's ``Table.append`` copies the whole table
    metadata about twenty times per append, so its cost grows with the table's history.
    """
    prepared = conform(rows, table.schema(), where=where)
    carried = CarriedFiles(table)
    carried.add(write_files(table, prepared))
    try:
        outcome = commit_carried(
            table, carried, branch=branch, snapshot_properties=snapshot_properties, max_attempts=max_attempts
        )
    finally:
        carried.discard()  # only what was never committed
    return dataclasses.replace(outcome, rows_in=prepared.num_rows, rows_inserted=prepared.num_rows)
