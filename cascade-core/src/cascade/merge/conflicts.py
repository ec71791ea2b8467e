"""Whether a chunked merge's net changes still hold on a branch that moved since its fork.

A streamed day cannot be planned again (its rows are gone once merged), but what it changed can
land on a newer head when nothing committed since the fork touched what the day depends on: as
Iceberg's own optimistic commits are validated, checked conservatively by file bounds. The
changes then store what the merge would have stored had it run after those commits. It
conflicts when a commit since the fork added or removed a file whose bounds meet a chunk's
least and greatest key or the day it replaces, replaced a file the merge rewrote, added delete
files, changed the table's schema or partition spec, or left the fork out of the history.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyiceberg.manifest import DataFile, ManifestContent
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from cascade.merge.commit import NetChanges
from cascade.merge.pruning import may_hold_keys


@dataclass(frozen=True)
class Fork:
    """Where a chunked merge's staging branch began: the snapshot, and the table's partition spec then."""

    snapshot_id: int
    spec_id: int


def rebase_conflict(table: Table, fork: Fork, head: Snapshot, changes: NetChanges) -> str | None:
    """Why ``changes``, planned on ``fork``, cannot land on ``head`` as they are, or ``None``."""
    forked = table.snapshot_by_id(fork.snapshot_id)
    if forked is None or not _descends_from(table, head, fork.snapshot_id):
        return f"snapshot {fork.snapshot_id} the merge forked from is no longer in the branch's history"
    if head.schema_id != forked.schema_id or table.spec().spec_id != fork.spec_id:
        return "the table's schema or partition spec changed"
    manifests = head.manifests(table.io)
    if any(m.content == ManifestContent.DELETES and (m.added_files_count or m.existing_files_count) for m in manifests):
        return "the table has delete files (merge-on-read), which a rewrite would not honour"
    before, after = live_files(table, forked), live_files(table, head)
    if any(data_file.file_path not in after for data_file in changes.deleted.values()):
        return "another commit replaced a file the merge rewrote"
    theirs = [f for path, f in after.items() if path not in before] + [
        f for path, f in before.items() if path not in after
    ]
    if any(may_hold_keys(data_file, region) for data_file in theirs for region in changes.regions):
        return "another commit added or removed rows within the merge's key range or the day it replaced"
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
    return any(snapshot.snapshot_id == ancestor_id for snapshot in ancestors_of(head, table.metadata))
