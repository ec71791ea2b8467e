"""Cascade's exceptions: one root, and a mark for whether retrying can help.

Adapters decide retries from ``CascadeError.transient`` instead of matching messages.
Every message names the asset, partition, table, column or plugin involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cascade.redaction import redact


class CascadeError(Exception):
    """Root of every error Cascade raises on purpose."""

    transient: bool = False


class TransientError(CascadeError):
    """A failure that may pass if the same run is tried again (rate limits, conflicts, outages)."""

    transient = True


class TerminalError(CascadeError):
    """A failure that the same inputs will always reproduce: retrying cannot help."""

    transient = False


class AssetDefinitionError(TerminalError, ValueError):
    """A ``@cascade_ingestion`` parameter is wrong; raised at decoration time."""

    def __init__(self, asset: str, parameter: str, problem: str) -> None:
        self.asset = asset
        self.parameter = parameter
        super().__init__(f"asset {asset!r}: parameter {parameter!r}: {problem}")


class ConfigurationError(TerminalError, ValueError):
    """Cascade's configuration (``cascade.toml``, ``CASCADE_*``) is invalid."""


class DuplicateAssetError(TerminalError):
    """Two assets claim the same asset name or the same table."""


class PluginLoadError(TerminalError):
    """A plugin's entry point could not be loaded."""

    def __init__(self, plugin: str, error: BaseException) -> None:
        self.plugin = plugin
        self.error = error
        super().__init__(f"plugin {plugin!r} failed to load: {type(error).__name__}: {redact(str(error))}")


class UnknownAssetError(TerminalError, LookupError):
    """No registered asset has the requested name."""


class RunError(CascadeError):
    """A failure during one run, with the asset and partition it happened in."""

    def __init__(self, message: str, *, asset: str, partition: str) -> None:
        self.asset = asset
        self.partition = partition
        super().__init__(f"asset {asset!r}, partition {partition}: {message}")


class SourceError(RunError, TerminalError):
    """The source (the asset's dlt source or the API behind it) failed for good."""


class TransientSourceError(RunError, TransientError):
    """The source failed in a way that may pass (5xx, timeouts, rate limits past the budget)."""


class RunTimeoutError(RunError, TransientError):
    """The run exceeded the asset's ``max_runtime_seconds``; nothing was committed."""


class StagingError(RunError, TerminalError):
    """dlt could not stage the source's data as one table of parquet files."""


@dataclass(frozen=True)
class FailedCheck:
    """One failing Pandera check: which column, which check, how often, and examples."""

    column: str | None
    check: str
    failure_count: int
    failure_cases: tuple[str, ...]


class ValidationError(RunError, TerminalError):
    """The batch failed its Pandera model; nothing was committed."""

    def __init__(
        self,
        *,
        asset: str,
        partition: str,
        failed_checks: Sequence[FailedCheck],
        failing_rows: str,
    ) -> None:
        self.failed_checks = tuple(failed_checks)
        self.failing_rows = failing_rows
        lines = [
            f"{len(self.failed_checks)} validation check(s) failed:",
            *(
                f"  - column {c.column!r}: {c.check} failed for {c.failure_count} row(s), e.g. "
                f"{', '.join(c.failure_cases)}"
                for c in self.failed_checks
            ),
            "failing rows (first 5):",
            failing_rows,
        ]
        super().__init__("\n".join(lines), asset=asset, partition=partition)


class SchemaMismatchError(TerminalError, ValueError):
    """A batch cannot be conformed to the Iceberg table's schema (column named)."""


class SchemaEvolutionError(SchemaMismatchError):
    """The asset's definition changed in a way its table cannot follow; nothing was committed.

    ``problems`` names every change (column, key or partition spec) and how to proceed.
    """

    def __init__(self, where: str, problems: Sequence[str], *, headline: str) -> None:
        self.where = where
        self.problems = tuple(problems)
        lines = [f"{where}: {headline}; nothing was committed:", *(f"  - {p}" for p in self.problems)]
        super().__init__("\n".join(lines))


class NullKeyError(TerminalError, ValueError):
    """A batch holds rows whose unique key is null."""


class CatalogError(TransientError):
    """The catalog could not be reached or refused us (down, timed out, wrong credentials)."""


class CorruptCatalogError(TerminalError):
    """The catalog's own file is not a readable catalog (overwritten, truncated, garbage); retrying cannot help."""


class StorageError(TransientError):
    """The warehouse storage (a folder, S3, ...) could not be read or written."""


class MergeConflictError(TransientError):
    """Concurrent commits kept invalidating the merge plan past the retry budget."""


class CommitVetoedError(RunError, TerminalError):
    """A ``cascade_before_commit`` hook vetoed the commit; nothing was committed."""

    def __init__(self, reason: str, *, plugin: str, asset: str, partition: str) -> None:
        self.reason = reason
        self.plugin = plugin
        super().__init__(f"commit vetoed by plugin {plugin!r}: {reason}", asset=asset, partition=partition)


class HookError(RunError, TerminalError):
    """A hook implementation raised; the message names its plugin."""

    def __init__(self, message: str, *, plugin: str, hook: str, asset: str, partition: str) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(f"hook {hook} of plugin {plugin!r} failed: {message}", asset=asset, partition=partition)


class MaintenanceError(TerminalError):
    """A maintenance step cannot be done on a table; nothing of that step was committed."""
