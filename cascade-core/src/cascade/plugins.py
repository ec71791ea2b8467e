"""The hook plugin manager: the one place ``cascade.hooks`` entry points are loaded and called.

Implementations are called one by one (not through pluggy's single call) so that each failure
or veto can be reported with the name of the plugin behind it. A hook cannot end the process:
``sys.exit`` or any other ``BaseException`` (but Ctrl-C) from a hook is a failure of that hook
like any exception, so the run's outcome, and the command's exit code, say whether it committed.
The same environment switches as asset discovery apply: ``CASCADE_DISABLE_PLUGIN_AUTOLOAD`` and
``CASCADE_BLOCKED_PLUGINS``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pluggy

from cascade import hookspecs
from cascade.errors import CommitVetoedError, HookError, PluginLoadError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

    from cascade.config import CascadeConfig
    from cascade.context import RunContext
    from cascade.ingestion import CascadeAsset
    from cascade.merge import MergePlan
    from cascade.results import IngestionResult
    from cascade.validation import ValidationReport

HOOKS_GROUP = "cascade.hooks"


def _stop_on_interrupt(error: BaseException) -> None:
    """Ctrl-C from inside a hook still stops the process; anything else a hook raises is its failure."""
    if isinstance(error, KeyboardInterrupt):
        raise error


hookimpl = pluggy.HookimplMarker("cascade")


class Hooks:
    """Typed wrappers around every hook in :mod:`cascade.hookspecs`."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("cascade")
        self.manager.add_hookspecs(hookspecs)
        self.failures: list[PluginLoadError] = []
        self._loaded = False
        self._lock = threading.Lock()

    # --- plugins ----------------------------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register an object or module holding ``@hookimpl`` functions; returns its name."""
        registered = self.manager.register(plugin, name=name)
        assert registered is not None, f"plugin {name!r} is already registered"
        return registered

    def unregister(self, name: str) -> None:
        self.manager.unregister(name=name)

    def load_entry_points(self) -> None:
        """Load the ``cascade.hooks`` entry points once per process."""
        from cascade.registry import autoload_enabled, blocked_plugins, plugin_name

        with self._lock:
            if self._loaded or not autoload_enabled():
                return
            self._loaded = True
            from importlib.metadata import entry_points

            blocked = blocked_plugins()
            for entry_point in entry_points(group=HOOKS_GROUP):
                name = plugin_name(entry_point)
                if name in blocked or entry_point.name in blocked or self.manager.has_plugin(name):
                    continue
                try:
                    self.manager.register(entry_point.load(), name=name)
                except Exception as error:  # a broken hook plugin must not stop runs
                    self.failures.append(PluginLoadError(name, error))

    def _impls(self, hook: str) -> Iterator[tuple[str, Any]]:
        for impl in reversed(getattr(self.manager.hook, hook).get_hookimpls()):  # registration order
            yield self.manager.get_name(impl.plugin) or repr(impl.plugin), impl.function

    def _observe(self, hook: str, **kwargs: Any) -> None:
        from cascade.logger import log
        from cascade.redaction import redact

        for plugin, function in self._impls(hook):
            try:
                function(**kwargs)
            except BaseException as error:  # observers never change a run's outcome
                _stop_on_interrupt(error)
                message = f"exit code {error.code}" if isinstance(error, SystemExit) else redact(str(error))
                log.error("hook failed", hook=hook, plugin=plugin, error=type(error).__name__, message=message)

    # --- observing hooks ----------------------------------------------------------------------------------

    def config_loaded(self, config: CascadeConfig) -> None:
        self._observe("cascade_config_loaded", config=config)

    def asset_registered(self, asset: CascadeAsset[Any, Any]) -> None:
        self._observe("cascade_asset_registered", asset=asset)

    def run_started(self, context: RunContext) -> None:
        self._observe("cascade_run_started", context=context)

    def after_validation(self, context: RunContext, report: ValidationReport) -> None:
        self._observe("cascade_after_validation", context=context, report=report)

    def after_commit(self, context: RunContext, result: IngestionResult) -> None:
        self._observe("cascade_after_commit", context=context, result=result)

    def run_failed(self, context: RunContext, error: BaseException) -> None:
        self._observe("cascade_run_failed", context=context, error=error)

    # --- shaping hooks ------------------------------------------------------------------------------------

    def after_extract(self, context: RunContext, rows: pa.Table) -> pa.Table:
        """Each implementation may replace the rows; a failure aborts the run, naming the plugin."""
        for plugin, function in self._impls("cascade_after_extract"):
            try:
                replaced = function(context=context, rows=rows)
            except BaseException as error:
                _stop_on_interrupt(error)
                raise self._hook_error("cascade_after_extract", plugin, context, error) from error
            if replaced is not None and not isinstance(replaced, type(rows)):
                raise HookError(
                    f"returned {type(replaced).__name__}, not None or a pyarrow Table",
                    plugin=plugin,
                    hook="cascade_after_extract",
                    asset=context.asset,
                    partition=context.partition_date,
                )
            if replaced is not None:
                problem = changed_beyond_rows(rows, replaced)
                if problem is not None:
                    raise self._hook_error("cascade_after_extract", plugin, context, ValueError(problem))
                rows = replaced
        return rows

    def before_commit(self, context: RunContext, plan: MergePlan) -> None:
        """Raise :class:`CommitVetoedError` for the first plugin that vetoes (returns a reason)."""
        for plugin, function in self._impls("cascade_before_commit"):
            try:
                reason = function(context=context, plan=plan)
            except BaseException as error:
                _stop_on_interrupt(error)
                raise self._hook_error("cascade_before_commit", plugin, context, error) from error
            if reason is not None:
                raise CommitVetoedError(
                    str(reason), plugin=plugin, asset=context.asset, partition=context.partition_date
                )

    def audit(self, context: RunContext, table: Table, snapshot_id: int) -> list[tuple[str, str]]:
        """Every implementation's failing reason, as (plugin, reason); a raising audit aborts, naming it."""
        failures = []
        for plugin, function in self._impls("cascade_audit"):
            try:
                reason = function(context=context, table=table, snapshot_id=snapshot_id)
            except Exception as error:
                raise self._hook_error("cascade_audit", plugin, context, error) from error
            if reason is not None:
                failures.append((plugin, str(reason)))
        return failures

    @staticmethod
    def _hook_error(hook: str, plugin: str, context: RunContext, error: BaseException) -> HookError:
        from cascade.redaction import redact

        message = f"exit code {error.code}" if isinstance(error, SystemExit) else redact(str(error))
        return HookError(
            f"{type(error).__name__}: {message}",
            plugin=plugin,
            hook=hook,
            asset=context.asset,
            partition=context.partition_date,
        )


_hooks = Hooks()


def hooks() -> Hooks:
    """The process's hook manager, with the ``cascade.hooks`` entry points loaded."""
    _hooks.load_entry_points()
    return _hooks


def register(plugin: object, name: str | None = None) -> str:
    """Register hook implementations in code (tests, notebooks, applications)."""
    return _hooks.register(plugin, name)


def unregister(name: str) -> None:
    _hooks.unregister(name)


def changed_beyond_rows(received: pa.Table, returned: object) -> str | None:
    """Why a table an ``after_extract`` hook returned is not allowed, or ``None``.

    A hook may drop, add or change rows, but it returns the schema it received, and
    ``_cascade_ingested_at`` (Cascade's stamp of this run) unchanged.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from cascade.spec import INGESTED_AT

    if not isinstance(returned, pa.Table):
        return f"returned {type(returned).__name__}, not a pyarrow Table"
    if not returned.schema.equals(received.schema):
        return f"returned the schema {returned.schema.names} instead of the one it received {received.schema.names}"
    stamps = pc.unique(received.column(INGESTED_AT))
    if returned.num_rows and not pc.all(pc.is_in(returned.column(INGESTED_AT), value_set=stamps)).as_py():
        return f"changed {INGESTED_AT!r}, which Cascade sets"
    return None


register_hooks = register
unregister_hooks = unregister
