"""Whether a chunked merge's net changes still hold on a branch that moved since its fork.

A streamed day cannot be planned again (its rows are gone once merged), but what it changed can
land on a newer head when nothing committed since the fork touched the day's keys: as Iceberg's
own optimistic commits do, checked conservatively by key bounds. The changes then store what the
merge would have stored had it run after those commits. It conflicts when a commit since the fork
added or removed a file whose key bounds meet a chunk's, changed the table's schema or partition
spec, or left the fork out of the branch's history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg.manifest import DataFile, ManifestContent
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from cascade.merge.pruning import KeyRange, key_intervals, may_hold_keys

HISTORY_DEPTH = 10_000  # snapshots searched back from the head for the fork


@dataclass
class Fork:
    """Where a chunked merge's staging branch began, and the key bounds of each chunk merged since."""

    snapshot_id: int
    spec_id: int
    keys: tuple[str, ...]
    chunks: list[list[KeyRange]] = field(default_factory=list)

    def took(self, table: Table, chunk: pa.Table) -> None:
        if chunk.num_rows:
            self.chunks.append(key_intervals(table.schema(), chunk, self.keys))


def rebase_conflict(table: Table, fork: Fork, head: Snapshot, deleted: Iterable[DataFile]) -> str | None:
    """Why changes deleting ``deleted``, planned on ``fork``, cannot land on ``head`` as they are, or ``None``."""
    forked = table.snapshot_by_id(fork.snapshot_id)
    if forked is None or not _descends_from(table, head, fork.snapshot_id):
        return f"snapshot {fork.snapshot_id} the merge forked from is no longer in the branch's history"
    if head.schema_id != forked.schema_id or table.spec().spec_id != fork.spec_id:
        return "the table's schema or partition spec changed"
    before, after = live_files(table, forked), live_files(table, head)
    if any(data_file.file_path not in after for data_file in deleted):
        return "another commit replaced a file the merge rewrote"
    theirs = [f for path, f in after.items() if path not in before] + [
        f for path, f in before.items() if path not in after
    ]
    if any(may_hold_keys(data_file, chunk) for data_file in theirs for chunk in fork.chunks):
        return "another commit added or removed rows within the key range of the merge's rows"
    return None


def live_files(table: Table, snapshot: Snapshot) -> dict[str, DataFile]:
    """The data files ``snapshot`` holds, by path."""
    return {
        entry.data_file.file_path: entry.data_file
        for manifest in snapshot.manifests(table.io)
        if manifest.content == ManifestContent.DATA
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
    }


def _descends_from(table: Table, head: Snapshot, ancestor_id: int) -> bool:
    snapshot: Snapshot | None = head
    for _ in range(HISTORY_DEPTH):
        if snapshot is None:
            return False
        if snapshot.snapshot_id == ancestor_id:
            return True
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return False
