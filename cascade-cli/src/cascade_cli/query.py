"""``cascade query``: read-only SQL over Cascade's Iceberg tables, with DuckDB locked down.

Only the Iceberg tables are visible, each as ``namespace.table`` through its current snapshot.
DuckDB runs with external access off (no file reads or writes: ``COPY``, ``EXPORT``, ``ATTACH``
of a file, ``read_text``/``read_csv``, ``INSTALL``, ``LOAD``), no extension autoloading or
download, no Python objects as tables, and its configuration locked before the user's SQL runs.
On top of that only one ``SELECT`` (or ``EXPLAIN``) statement is accepted.

Tables are not loaded into memory: each is registered as an Arrow dataset over the snapshot's
data files, which DuckDB scans with its filters and projections pushed down. A snapshot with
delete files is streamed through pyiceberg's reader instead (which applies the deletes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cascade import ConfigurationError, all_tables, load_table

if TYPE_CHECKING:
    import pyarrow as pa

LOCKED_DOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
}


def run_query(catalog: Any, sql: str) -> pa.Table:
    """Run one read-only statement over the catalog's tables; a refused or failing query is a usage error."""
    import duckdb

    connection = duckdb.connect(config=dict(LOCKED_DOWN))
    try:
        check_read_only(connection, sql)
        register_tables(connection, catalog, referenced_names(sql))
        connection.execute("SET lock_configuration = true")
        try:
            return connection.sql(sql).to_arrow_table()
        except duckdb.Error as error:
            raise query_failed(error) from None
    finally:
        connection.close()


def query_failed(error: Exception) -> ConfigurationError:
    """DuckDB's message (and its "Did you mean" hint) on one line."""
    return ConfigurationError("query failed: " + " ".join(line.strip() for line in str(error).splitlines()))


def check_read_only(connection: Any, sql: str) -> None:
    import duckdb

    try:
        statements = connection.extract_statements(sql)
    except duckdb.Error as error:
        raise query_failed(error) from None
    kinds = [statement.type for statement in statements]
    allowed = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
    if len(kinds) != 1 or kinds[0] not in allowed:
        shown = ", ".join(kind.name for kind in kinds) or "none"
        raise ConfigurationError(
            f"cascade query runs exactly one read-only SELECT statement; got {len(kinds)} statement(s): {shown}"
        )


def referenced_names(sql: str) -> set[str]:
    """The bare table names the query mentions (a superset is harmless: unused tables stay unread)."""
    import duckdb

    try:
        return {name.split(" ")[0].split(".")[-1].strip('"') for name in duckdb.get_table_names(sql)}
    except duckdb.Error as error:
        raise query_failed(error) from None


def register_tables(connection: Any, catalog: Any, names: set[str]) -> None:
    for identifier in all_tables(catalog):
        namespace, name = identifier.split(".")
        if name not in names:
            continue
        hidden = f"__cascade__{namespace}__{name}"
        connection.register(hidden, table_source(load_table(catalog, identifier)))
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
        connection.execute(f'CREATE VIEW "{namespace}"."{name}" AS SELECT * FROM "{hidden}"')


def table_source(table: Any) -> Any:
    """The current snapshot as something DuckDB scans lazily: an Arrow dataset, or a stream of batches."""
    import pyarrow.dataset as ds
    from pyiceberg.io.pyarrow import PyArrowFileIO

    scan = table.scan()
    schema = table.schema().as_arrow()
    tasks = list(scan.plan_files())
    if not tasks:
        return schema.empty_table()
    if isinstance(table.io, PyArrowFileIO) and not any(task.delete_files for task in tasks):
        locations = [PyArrowFileIO.parse_location(task.file.file_path) for task in tasks]
        filesystems = {(scheme, netloc) for scheme, netloc, _ in locations}
        if len(filesystems) == 1:
            scheme, netloc = filesystems.pop()
            paths = [path for _, _, path in locations]
            return ds.dataset(paths, schema=schema, format="parquet", filesystem=table.io.fs_by_scheme(scheme, netloc))
    return scan.to_arrow_batch_reader()
