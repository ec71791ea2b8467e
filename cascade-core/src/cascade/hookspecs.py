"""Every hook Cascade calls, in one place. Implement them in a plugin registered through the
``cascade.hooks`` entry point (or ``cascade.register_hooks``), with ``@cascade.hookimpl``.

Hooks are called through pluggy, so an implementation is written as for pytest or llm: it
declares only the arguments it needs, in any order; ``@hookimpl(tryfirst=True)`` /
``trylast=True`` move it to the front or the back (otherwise the plugin registered last is
called first); ``@hookimpl(wrapper=True)`` (or the older ``hookwrapper=True``) makes it a
generator that runs around the other implementations and receives their outcome from its
``yield``; and a ``firstresult`` hook stops at the first implementation that returns something.

Observing hooks (every hook not in :data:`SHAPING_HOOKS`) never change a run's outcome: an
exception there is logged with the plugin's name, the other implementations still run and so
does the run; data already committed stays committed. Hooks that shape the run
(``cascade_after_extract``, ``cascade_before_commit``, ``cascade_audit``) abort it when an
implementation raises, with a :class:`cascade.errors.HookError` naming the plugin, and nothing is
committed (or published). A hook cannot end the process: ``sys.exit`` or any other
``BaseException`` but Ctrl-C counts as that implementation failing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

    from cascade.config import CascadeConfig
    from cascade.context import RunContext
    from cascade.ingestion import CascadeAsset
    from cascade.merge import MergePlan
    from cascade.results import IngestionResult
    from cascade.validation import ValidationReport

hookspec = pluggy.HookspecMarker("cascade")

SHAPING_HOOKS = frozenset({"cascade_after_extract", "cascade_before_commit", "cascade_audit"})
"""Hooks whose failures abort the run, naming the plugin; a failure in any other is logged."""


# --- set-up ----------------------------------------------------------------------------------------


@hookspec
def cascade_config_loaded(config: CascadeConfig) -> None:
    """Called once per run after the configuration is resolved, before anything else happens.

    :param config: the configuration in effect (secrets included; never log it unmasked).
    Observing: a failure is logged and ignored.
    """


@hookspec
def cascade_asset_registered(asset: CascadeAsset[Any, Any]) -> None:
    """Called when an asset is added to the registry (on import of its module).

    A plugin registered later is called then for every asset registered before it (as pluggy's
    historic hooks are), so a plugin sees every asset whichever was imported first.

    :param asset: the decorated asset, with its frozen ``spec``.
    Observing: a failure is logged and ignored.
    """


# --- a run, phase by phase -----------------------------------------------------------------------------


@hookspec(firstresult=True)
def cascade_run(context: RunContext) -> IngestionResult | None:
    """Called around the whole run once it is resolved: wrap it to time or annotate runs.

    Implement it only as a wrapper, ``@hookimpl(wrapper=True)`` (or ``hookwrapper=True``); a plain
    implementation is refused when its plugin registers, because Cascade's own implementation is
    the run: every other hook of the run, from ``cascade_config_loaded`` to ``cascade_after_commit``
    or ``cascade_run_failed``, is called inside it. A wrapper's ``yield`` returns the run's
    :class:`~cascade.results.IngestionResult`, or raises the error the caller will receive; the
    OpenTelemetry span current in the wrapper is the run's (``cascade.run``).

    Stops at first non-None result.

    :param context: the run.
    :return: the run's result.
    Observing: a wrapper's own failure is logged and ignored, and what a wrapper returns or
    raises in place of the run's outcome is ignored too: the caller gets the run's own.
    """


@hookspec
def cascade_run_started(context: RunContext) -> None:
    """Called when a run starts, after the branch, table and run id are resolved.

    :param context: the run (asset, partition, branch, run id, configuration).
    Observing: a failure is logged and ignored.
    """


@hookspec
def cascade_after_extract(context: RunContext, rows: pa.Table) -> pa.Table | None:
    """Called with the staged rows before validation; may return a replacement table.

    Use it to drop records or change values. The implementations form a chain in call order:
    each receives as ``rows`` the table the previous one returned; return ``None`` to leave the
    rows as they are. A replacement keeps the schema it received and ``_cascade_ingested_at``
    as Cascade set it. A wrapper's ``yield`` returns the list of replacements, the last one being
    what goes on; a wrapper may return another list, whose last table then goes on.

    :param context: the run.
    :param rows: the staged rows (or the previous implementation's), with ``_cascade_ingested_at``.
    :return: the rows to validate and merge, or ``None``.
    Shaping: a failure, or a table with another schema or stamp, aborts the run with nothing
    committed.
    """


@hookspec
def cascade_after_validation(context: RunContext, report: ValidationReport) -> None:
    """Called with the validation report, whether it passed or not (a failed run raises after).

    :param context: the run.
    :param report: the outcome of the Pandera model (``report.passed``, ``report.failed_checks``).
    Observing: a failure is logged and ignored.
    """


@hookspec(firstresult=True)
def cascade_before_commit(context: RunContext, plan: MergePlan) -> str | None:
    """Called with the merge plan just before the commit: the audit step of write-audit-publish.

    Stops at first non-None result.

    :param context: the run.
    :param plan: rows to insert and update, files to replace.
    :return: ``None`` to allow the commit, or a reason string to veto it.
    Shaping: a veto or a failure aborts the run with nothing committed; the
    :class:`~cascade.errors.CommitVetoedError` names the plugin (or wrapper) that returned the reason.
    """


@hookspec
def cascade_audit(context: RunContext, table: Table, snapshot_id: int) -> str | None:
    """Called under write-audit-publish with the run's committed, not yet published, snapshot.

    The run merged onto a private audit branch; readers of the target branch do not see it
    yet. Read the data as committed with ``table.scan(snapshot_id=snapshot_id)``. Every
    implementation is called (this is not ``firstresult``), each reason is reported with its
    plugin's name, and the target is fast-forwarded to the snapshot only when none returns a
    reason. Called again on a new snapshot if the
    target moved during the audit and the run re-merged.

    :param context: the run.
    :param table: the pyiceberg table (do not commit to it).
    :param snapshot_id: the audited snapshot, the head of the audit branch.
    :return: ``None`` when the audit passes, or a reason string when it fails.
    Shaping: a failure or a reason fails the run with the target branch untouched, and keeps
    the audit branch for inspection until it is dropped.
    """


@hookspec
def cascade_after_commit(context: RunContext, result: IngestionResult) -> None:
    """Called after a successful run (whether or not it committed a snapshot).

    :param context: the run.
    :param result: the frozen result, as the caller receives it.
    Observing: a failure is logged and ignored; the data stays committed.
    """


@hookspec
def cascade_run_failed(context: RunContext, error: BaseException) -> None:
    """Called when a run fails, in any phase, before the error reaches the caller.

    :param context: the run.
    :param error: the exception the caller will receive (secrets masked in its message).
    Observing: a failure is logged and ignored; the original error is raised.
    """
