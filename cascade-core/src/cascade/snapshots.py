"""Committing a merge's overwrite snapshot with bounded metadata, on pyiceberg's snapshot internals.

pyiceberg's overwrite (``_OverwriteFiles``, checked on pyiceberg 0.12) adds one manifest per
commit, never merges manifests, and carries every earlier snapshot's delete-only manifest
forward, so after N merges a snapshot lists about N manifests and each merge is slower than
the last. Iceberg's merging snapshot producers (Java's ``MergingSnapshotProducer``, pyiceberg's
own ``_MergeAppendFiles``) keep the count bounded; :class:`cascade.pyiceberg_compat.MergingOverwrite`
does the same for an overwrite, reusing pyiceberg's ``_ManifestMergeManager``:

- manifests without live files that an earlier snapshot wrote are dropped (as a fast append does);
- when ``commit.manifest-merge.enabled`` (default true, as in Java), small data manifests are
  packed into manifests near ``commit.manifest.target-size-bytes`` (8 MiB), merging the bin
  holding this commit's new manifest only once it counts ``commit.manifest.min-count-to-merge``
  (100) manifests.

pyiceberg has no public way to commit exactly once with a guard and without its own retry;
:func:`commit_overwrite` stages the producer's updates and commits them itself, through
:mod:`cascade.pyiceberg_compat` (where every private name Cascade uses lives).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.update import AssertTableUUID, SetPropertiesUpdate, TableUpdate

from cascade.catalog import METADATA_PROPERTIES
from cascade.errors import ConfigurationError
from cascade.pyiceberg_compat import MergingOverwrite, PlanningTransaction, commit_once

MERGE_ENABLED_DEFAULT = True  # Iceberg's (Java) default; pyiceberg's constant says False


def _int_property(properties: Mapping[str, str], key: str, where: str) -> int:
    defaults = {
        TableProperties.MANIFEST_TARGET_SIZE_BYTES: TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT,
        TableProperties.MANIFEST_MIN_MERGE_COUNT: TableProperties.MANIFEST_MIN_MERGE_COUNT_DEFAULT,
    }
    value = properties.get(key)
    if value is None:
        return int(defaults[key])
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigurationError(f"{where}: table property {key}={value!r} must be a positive integer")
    return number


def _bool_property(properties: Mapping[str, str], key: str, where: str) -> bool:
    value = properties.get(key)
    if value is None:
        return MERGE_ENABLED_DEFAULT
    if value.strip().lower() not in ("true", "false"):
        raise ConfigurationError(f"{where}: table property {key}={value!r} must be true or false")
    return value.strip().lower() == "true"


def missing_metadata_properties(table: Table) -> dict[str, str]:
    """Cascade's metadata properties the table does not set yet (a value set by anyone is kept)."""
    return {k: v for k, v in METADATA_PROPERTIES.items() if k not in table.metadata.properties}


def commit_overwrite(
    table: Table,
    *,
    branch: str,
    deleted: Iterable[DataFile],
    added: Iterable[DataFile],
    snapshot_properties: Mapping[str, str],
) -> int:
    """Replace ``deleted`` with ``added`` in one snapshot on ``branch``, in exactly one commit attempt.

    The commit asserts the table's identity and the branch head the caller planned against
    (``table.metadata``); if either moved, pyiceberg's ``CommitFailedException`` is raised and
    the caller re-plans. pyiceberg's ``commit_transaction`` would instead retry by re-applying
    these files to a table that moved. Cascade's metadata properties missing from an older
    table are set in the same commit. Returns the new snapshot's id.
    """
    where = f"table {'.'.join(table.name())}"
    properties = table.metadata.properties
    producer = MergingOverwrite(
        PlanningTransaction(table),
        branch=branch,
        snapshot_properties=dict(snapshot_properties),
        target_size_bytes=_int_property(properties, TableProperties.MANIFEST_TARGET_SIZE_BYTES, where),
        min_count_to_merge=_int_property(properties, TableProperties.MANIFEST_MIN_MERGE_COUNT, where),
        merge_enabled=_bool_property(properties, TableProperties.MANIFEST_MERGE_ENABLED, where),
    )
    for data_file in deleted:
        producer.delete_data_file(data_file)
    for data_file in added:
        producer.append_data_file(data_file)
    try:
        updates, requirements = producer.staged()
        extra: tuple[TableUpdate, ...] = ()
        if missing := missing_metadata_properties(table):
            extra = (SetPropertiesUpdate(updates=missing),)
        commit_once(table, (*extra, *updates), (*requirements, AssertTableUUID(uuid=table.metadata.table_uuid)))
    except (CommitFailedException, ValidationException, ValueError):
        # The catalog refused the commit before applying it: nothing references what we wrote.
        producer.remove_uncommitted()
        raise
    for path in producer.unlisted_manifests():
        with contextlib.suppress(OSError):  # an orphan manifest costs space, never correctness
            table.io.delete(path)
    head = table.snapshot_by_name(branch)
    assert head is not None
    return head.snapshot_id
