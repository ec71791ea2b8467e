"""Every use of pyiceberg's private API, in one place (checked on pyiceberg 0.12).

pyiceberg has no public way to write data files without committing them, to commit exactly
once with our own guards (its ``commit_transaction`` retries by re-applying the changes to a
table that moved), to move a branch only if it has not moved, or to keep an overwrite's
manifest count bounded. Cascade needs each of these; the rest of Cascade calls the functions
below and never touches a name pyiceberg marks private. ``tests/unit/test_pyiceberg_compat.py``
runs each one on the lowest and the latest supported pyiceberg.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import (
    ParquetFormatWriter,
    _dataframe_to_data_files,
    _determine_partitions,
    _to_requested_schema,
    bin_pack_arrow_table,
    pyarrow_to_schema,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestContent, ManifestFile
from pyiceberg.partitioning import PartitionKey
from pyiceberg.schema import Schema, sanitize_column_names
from pyiceberg.table import DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE, Table, TableProperties, Transaction, WriteTask
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.refs import SnapshotRefType
from pyiceberg.table.snapshots import Operation
from pyiceberg.table.update import AssertRefSnapshotId, TableRequirement, TableUpdate
from pyiceberg.table.update.snapshot import _ManifestMergeManager, _OverwriteFiles
from pyiceberg.typedef import Record
from pyiceberg.utils.concurrent import ExecutorFactory
from pyiceberg.utils.config import Config
from pyiceberg.utils.properties import property_as_int


def write_data_files(metadata: TableMetadata, rows: pa.Table, io: FileIO, keys: Sequence[str] = ()) -> list[DataFile]:
    """Write ``rows`` as data files laid out by ``metadata`` (partition spec, target size); commits nothing.

    pyiceberg's own write (``_dataframe_to_data_files`` and ``write_file``) but for one setting: a
    unique key of one column (``keys``) is written without a dictionary. Each of its values appears
    once in the table, so a dictionary cannot pay; Arrow's attempt at one before falling back held
    23 MB per million int64 keys (a third of a million-row write's memory) and left the file larger.
    """
    file_schema = sanitize_column_names(metadata.schema())
    key = _file_column(metadata.schema(), file_schema, keys[0]) if len(keys) == 1 else None
    parquet = metadata.properties.get(TableProperties.WRITE_FILE_FORMAT, "parquet").lower() == "parquet"
    if key is None or not parquet:
        return list(_dataframe_to_data_files(table_metadata=metadata, df=rows, io=io, write_uuid=uuid.uuid4()))
    write = functools.partial(_write_parquet, metadata, io, file_schema, key)
    return list(ExecutorFactory.get_or_create().map(write, _write_tasks(metadata, rows)))


def _write_tasks(metadata: TableMetadata, rows: pa.Table) -> list[WriteTask]:
    """The files pyiceberg would write ``rows`` as: one set per partition, bin-packed to the target size."""
    schema = metadata.schema()
    task_schema = pyarrow_to_schema(
        rows.schema,
        name_mapping=schema.name_mapping,
        downcast_ns_timestamp_to_us=_downcast_ns(),
        format_version=metadata.format_version,
    )
    target_size = property_as_int(  # as pyiceberg reads it: an empty value is the default
        metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )
    assert target_size is not None
    if metadata.spec().is_unpartitioned():
        parts: list[tuple[PartitionKey | None, pa.Table]] = [(None, rows)]
    else:
        parts = [
            (part.partition_key, part.arrow_table_partition)
            for part in _determine_partitions(spec=metadata.spec(), schema=schema, arrow_table=rows)
        ]
    write_uuid, counter = uuid.uuid4(), itertools.count(0)
    return [
        WriteTask(write_uuid=write_uuid, task_id=next(counter), record_batches=b, partition_key=k, schema=task_schema)
        for k, part in parts
        for b in bin_pack_arrow_table(part, target_size)
        if b
    ]


def _write_parquet(metadata: TableMetadata, io: FileIO, file_schema: Schema, key: str, task: WriteTask) -> DataFile:
    """pyiceberg's ``write_file`` for one task, with ``key``'s column written without a dictionary."""
    model, downcast = FileFormatFactory.get(FileFormat.PARQUET), _downcast_ns()
    batches = [
        _to_requested_schema(
            requested_schema=file_schema,
            file_schema=task.schema,
            batch=batch,
            downcast_ns_timestamp_to_us=downcast,
            include_field_ids=True,
            format_model=model,
        )
        for batch in task.record_batches
    ]
    rows = pa.Table.from_batches(batches)
    path = load_location_provider(metadata.location, metadata.properties).new_data_location(
        data_file_name=task.generate_data_file_filename(model.file_extension()), partition_key=task.partition_key
    )
    output = io.new_output(path)
    writer = model.create_writer(output, file_schema, metadata.properties)
    assert isinstance(writer, ParquetFormatWriter)
    writer._parquet_writer_kwargs["use_dictionary"] = [c for c in _leaf_paths(rows.schema) if c != key]
    with writer:
        writer.write(rows)
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=task.partition_key.partition if task.partition_key else Record(),
        file_size_in_bytes=len(output),
        sort_order_id=None,
        spec_id=metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **writer.result().to_serialized_dict(),
    )


def _downcast_ns() -> bool:
    """pyiceberg's setting, read from its configuration (a file and the environment) on each call."""
    return Config().get_bool(DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE) or False


def _file_column(table_schema: Schema, file_schema: Schema, name: str) -> str | None:
    """The column path a table column is written under (names Parquet cannot hold are sanitized)."""
    try:
        field_id = table_schema.find_field(name).field_id
    except ValueError:
        return None
    return file_schema.find_column_name(field_id)


@functools.lru_cache(maxsize=32)
def _leaf_paths(schema: pa.Schema) -> tuple[str, ...]:
    """The Parquet column paths Arrow writes ``schema`` as (``use_dictionary`` names columns by these)."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    return tuple(column.path for column in pq.read_metadata(pa.BufferReader(sink.getvalue())).schema)


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
