"""Every use of pyiceberg's private API, in one place (checked on pyiceberg 0.12).

pyiceberg has no public way to write data files without committing them, to commit exactly
once with our own guards (its ``commit_transaction`` retries by re-applying the changes to a
table that moved), to move a branch only if it has not moved, or to keep an overwrite's
manifest count bounded. Cascade needs each of these; the rest of Cascade calls the functions
below and never touches a name pyiceberg marks private. ``tests/unit/test_pyiceberg_compat.py``
runs each one on the lowest and the latest supported pyiceberg.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

import pyarrow as pa
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile, ManifestContent, ManifestFile
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.refs import SnapshotRefType
from pyiceberg.table.snapshots import Operation
from pyiceberg.table.update import AssertRefSnapshotId, TableRequirement, TableUpdate
from pyiceberg.table.update.snapshot import _ManifestMergeManager, _OverwriteFiles


def write_data_files(metadata: TableMetadata, rows: pa.Table, io: FileIO) -> list[DataFile]:
    """Write ``rows`` as data files laid out by ``metadata`` (partition spec, target size); commits nothing."""
    return list(_dataframe_to_data_files(table_metadata=metadata, df=rows, io=io, write_uuid=uuid.uuid4()))


def commit_once(table: Table, updates: Iterable[TableUpdate], requirements: Iterable[TableRequirement]) -> None:
    """Send one commit to the catalog: applied whole if every requirement holds, refused otherwise."""
    table._do_commit(updates=tuple(updates), requirements=tuple(requirements))


def staged_updates(transaction: Transaction) -> tuple[TableUpdate, ...]:
    """The updates a transaction has staged, to commit them with other requirements than its own."""
    return tuple(transaction._updates)


def require_ref_heads(transaction: Transaction, heads: Mapping[str, int]) -> None:
    """Make a transaction's commit also assert each branch's head.

    ``Transaction._apply`` keeps one requirement per type, so these are added to its list directly.
    """
    transaction._requirements += tuple(
        AssertRefSnapshotId(snapshot_id=snapshot_id, ref=branch)  # type: ignore[call-arg]
        for branch, snapshot_id in heads.items()
    )


def move_branch(table: Table, branch: str, snapshot_id: int, *, expected: int | None) -> None:
    """Point ``branch`` at ``snapshot_id`` in one commit that fails if the branch left ``expected``.

    ``expected=None`` asserts the branch does not exist yet.
    """
    transaction = table.transaction()
    update, _ = transaction._set_ref_snapshot(snapshot_id=snapshot_id, ref_name=branch, type=SnapshotRefType.BRANCH)
    transaction._stage(update, (AssertRefSnapshotId(snapshot_id=expected, ref=branch),))  # type: ignore[call-arg]
    transaction.commit_transaction()


class PlanningTransaction(Transaction):
    """A transaction whose metadata is the table's own until something is staged.

    pyiceberg's ``Transaction.table_metadata`` re-applies the staged updates and deep-copies the
    whole metadata (every snapshot) on each access, and a snapshot producer reads it a dozen
    times per commit; with nothing staged that copy equals the table's metadata, which the
    producer only reads.
    """

    @property
    def table_metadata(self) -> TableMetadata:
        if not self._updates:
            return self._table.metadata
        return super().table_metadata


class MergingOverwrite(_OverwriteFiles):
    """An overwrite that keeps the snapshot's manifest count bounded, as a merging append does.

    pyiceberg's ``_OverwriteFiles`` adds one manifest per commit and never merges; this one drops
    manifests without live files and packs small data manifests with pyiceberg's own
    ``_ManifestMergeManager`` (see :mod:`cascade.snapshots` for the settings).
    """

    def __init__(
        self,
        transaction: Transaction,
        *,
        branch: str,
        snapshot_properties: dict[str, str],
        target_size_bytes: int,
        min_count_to_merge: int,
        merge_enabled: bool,
    ) -> None:
        metadata = transaction.table_metadata
        operation = Operation.OVERWRITE if metadata.snapshot_by_name(branch) is not None else Operation.APPEND
        super().__init__(operation, transaction, transaction._table.io, None, snapshot_properties, branch)
        self.target_size_bytes = target_size_bytes
        self.min_count_to_merge = min_count_to_merge
        self.merge_enabled = merge_enabled
        self.listed: list[str] = []

    def _process_manifests(self, manifests: list[ManifestFile]) -> list[ManifestFile]:
        live = [m for m in manifests if m.added_snapshot_id == self._snapshot_id or _has_live_files(m)]
        data = [m for m in live if m.content == ManifestContent.DATA]
        deletes = [m for m in live if m.content == ManifestContent.DELETES]
        merger = _ManifestMergeManager(
            target_size_bytes=self.target_size_bytes,
            min_count_to_merge=self.min_count_to_merge,
            merge_enabled=self.merge_enabled,
            snapshot_producer=self,
        )
        result = merger.merge_manifests(data) + deletes
        self.listed = [m.manifest_path for m in result]
        return result

    def staged(self) -> tuple[tuple[TableUpdate, ...], tuple[TableRequirement, ...]]:
        """Write the manifests and manifest list; the updates and requirements that commit them."""
        updates, requirements = self._commit()
        return tuple(updates), tuple(requirements)

    def unlisted_manifests(self) -> list[str]:
        """Manifests this commit wrote that its manifest list does not name (merged into others)."""
        listed = set(self.listed)
        return [path for path in self._written_manifests if path not in listed]

    def remove_uncommitted(self) -> None:
        """Delete every manifest and manifest list written for a commit that did not land."""
        self._clean_all_uncommitted()


def _has_live_files(manifest: ManifestFile) -> bool:
    return manifest.has_added_files() or manifest.has_existing_files()
