"""The Iceberg side of a run: the catalog, the asset's table, and branch references."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchTableError, NotInstalledError
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType

from cascade.config import CascadeConfig
from cascade.errors import CatalogError, ConfigurationError, CorruptCatalogError
from cascade.redaction import redact
from cascade.spec import AssetSpec

METADATA_PROPERTIES = {
    # Iceberg keeps every metadata.json ever written unless told otherwise; keep the last 100.
    TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED: "true",
    TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: str(TableProperties.METADATA_PREVIOUS_VERSIONS_MAX_DEFAULT),
    # Said out loud so that pyiceberg's own appends to the table (cascade-runlog's) merge too.
    TableProperties.MANIFEST_MERGE_ENABLED: "true",
}
"""Table properties Cascade sets on the tables it creates, and adds to older tables on their next merge."""
OPEN_ATTEMPTS = 4
SQLITE_BUSY_TIMEOUT_SECONDS = 30


def open_catalog(config: CascadeConfig) -> Catalog:
    """Load the configured pyiceberg catalog, creating the embedded default's folders."""
    props = config.catalog
    sqlite = props.get("uri", "").startswith("sqlite:///")
    if sqlite:
        config.home.mkdir(parents=True, exist_ok=True)
        (config.home / "warehouse").mkdir(exist_ok=True)
        props = {**props, "uri": with_busy_timeout(props["uri"])}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            catalog = load_catalog(config.catalog_name, **props)
            if sqlite:
                use_write_ahead_log(catalog)
            return catalog
        except Exception as error:
            # A SQL catalog creates its own tables on first open; concurrent first opens race
            # there, and the loser succeeds when it opens again.
            where = describe_catalog(config)
            if sqlite and "file is not a database" in str(error):
                raise corrupt_catalog(config) from None
            if isinstance(error, (ImportError, NotInstalledError, ValueError)):
                raise ConfigurationError(
                    f"{where} is misconfigured: {type(error).__name__}: {redact(str(error))}"
                ) from None
            if attempt + 1 < OPEN_ATTEMPTS:
                time.sleep(0.05 * (attempt + 1))
                continue
            raise CatalogError(
                f"{where} could not be opened after {OPEN_ATTEMPTS} attempts: "
                f"{type(error).__name__}: {redact(first_line(str(error)))}"
            ) from None
    raise AssertionError("unreachable")


def sqlite_file(config: CascadeConfig) -> Path | None:
    """The file of an SQLite catalog, or None for another catalog (or an in-memory SQLite one)."""
    uri = config.catalog.get("uri", "")
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def corrupt_catalog(config: CascadeConfig) -> CorruptCatalogError:
    """A catalog file that is not SQLite (garbage, overwritten): terminal, naming the file.

    Known from SQLite's own "file is not a database", never by opening the file ourselves: closing
    any descriptor of a database file drops every SQLite lock this process holds on it, and a
    WAL commit another process just made can then be lost.
    """
    return CorruptCatalogError(
        f"catalog {config.catalog_name!r}: {sqlite_file(config)} is not an SQLite database (corrupt or overwritten); "
        "restore it from a backup, or move it away to start an empty catalog"
    )


def with_busy_timeout(uri: str) -> str:
    """SQLite waits this long for a lock instead of failing with 'database is locked' at once."""
    if "timeout=" in uri:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}timeout={SQLITE_BUSY_TIMEOUT_SECONDS}"


def use_write_ahead_log(catalog: Catalog) -> None:
    """WAL lets readers and one writer of the embedded catalog proceed together (kept in the file)."""
    engine = getattr(catalog, "engine", None)
    if engine is not None:
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")


def first_line(text: str) -> str:
    """Database drivers append SQL and background links; the first line says what happened."""
    return text.strip().splitlines()[0] if text.strip() else text


def describe_catalog(config: CascadeConfig) -> str:
    """The catalog for error messages: its name and URI (or type), secrets masked."""
    props = config.catalog
    return f"catalog {config.catalog_name!r} ({redact(props.get('uri', props.get('type', '?')))})"


def storage_endpoint(config: CascadeConfig) -> str:
    """Where the warehouse lives, for error messages: the S3 endpoint and bucket, or the folder."""
    props = config.catalog
    warehouse = props.get("warehouse", "")
    endpoint = props.get("s3.endpoint")
    return redact(f"{warehouse} at {endpoint}" if endpoint else warehouse)


def ensure_table(catalog: Catalog, identifier: tuple[str, str], spec: AssetSpec) -> Table:
    """Load the asset's table, creating its namespace and the table itself when missing."""
    return load_or_create_table(
        catalog,
        identifier,
        spec.table_schema,
        partition_spec=spec.partition_spec,
        properties={"cascade.asset": spec.name, "cascade.unique-key": ",".join(spec.unique_key)},
    )


def load_or_create_table(
    catalog: Catalog,
    identifier: tuple[str, str],
    schema: Schema,
    *,
    partition_spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC,
    properties: dict[str, str] | None = None,
) -> Table:
    """Load a table, creating its namespace and the table (format v2) when missing; safe under races.

    A new table keeps only its last metadata files (:data:`METADATA_PROPERTIES`).
    """
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        pass
    # Another writer may create either first; SQL catalogs report that race as a raw integrity
    # error rather than AlreadyExists, so "it exists now" is the test, not the exception type.
    try:
        catalog.create_namespace(identifier[0])
    except Exception:
        if not catalog.namespace_exists(identifier[0]):
            raise
    try:
        return catalog.create_table(
            identifier,
            schema=schema,
            partition_spec=partition_spec,
            properties={"format-version": "2", **METADATA_PROPERTIES, **(properties or {})},
        )
    except Exception:
        if not catalog.table_exists(identifier):
            raise
        return catalog.load_table(identifier)


def branches(table: Table) -> dict[str, int]:
    """Branch names and the snapshot id each points at."""
    return {
        name: ref.snapshot_id
        for name, ref in table.metadata.refs.items()
        if ref.snapshot_ref_type == SnapshotRefType.BRANCH
    }


def initialize_main(table: Table) -> Table:
    """Give a table without snapshots one empty snapshot on main, so branches can fork from it.

    Iceberg (pyiceberg) only lets a table without snapshots be written on main.
    """
    if table.snapshot_by_name(MAIN_BRANCH) is None:
        transaction = table.transaction()
        with transaction.update_snapshot(snapshot_properties={"cascade.operation": "initialize"}).fast_append():
            pass
        transaction.commit_transaction()
    return table


def ensure_branch(table: Table, branch: str) -> Table:
    """Create ``branch`` from main's head when it does not exist yet; main's rows are not touched."""
    if branch == MAIN_BRANCH or branch in table.metadata.refs:
        return table
    main = initialize_main(table).snapshot_by_name(MAIN_BRANCH)
    assert main is not None
    table.manage_snapshots().create_branch(main.snapshot_id, branch).commit()
    return table


@contextlib.contextmanager
def writer_lock(table: Table, branch: str, *, wait_seconds: float) -> Iterator[bool]:
    """Let one Cascade writer at a time plan and commit to ``table``'s ``branch``, where the catalog can.

    On a SQL catalog in PostgreSQL this is a transaction-scoped advisory lock, released at the
    end or when the holder's connection dies (a killed worker never leaves it held). Waiting is
    bounded by ``wait_seconds``, after which the merge goes ahead optimistically. Elsewhere it
    is a no-op, and concurrent merges rely on the commit's head check and re-planning alone;
    the lock only spares the work a lost race throws away. Yields whether the lock is held.
    """
    engine = getattr(table.catalog, "engine", None)
    if engine is None or engine.dialect.name != "postgresql" or wait_seconds <= 0:
        yield False
        return
    name = f"{table.catalog.name}:{'.'.join(table.name())}@{branch}"  # catalogs may share one database
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(wait_seconds * 1000)}ms'")
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)", {"key": key})
            held = True
        except Exception:  # timed out waiting, or the catalog is down: the commit check still guards
            transaction.rollback()
            transaction = connection.begin()
            held = False
        try:
            yield held
        finally:
            # releases the lock (the transaction changed nothing); a dead connection released it already
            with contextlib.suppress(Exception):
                transaction.rollback()
