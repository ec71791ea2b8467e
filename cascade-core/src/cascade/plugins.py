"""The hook plugin manager: where ``cascade.hooks`` plugins are registered and every hook is called.

Hooks are called the pluggy way, ``manager.hook.<name>(...)``: an implementation may declare any
subset of the spec's arguments, ``tryfirst``/``trylast`` order it, ``wrapper=True`` and
``hookwrapper=True`` implementations wrap the others, and ``firstresult`` specs stop at the first
answer. What Cascade adds is accountability: every implementation is guarded where pluggy holds
it (:func:`_guard`), so a failing observer is logged with its plugin's name while the others and
the run go on, and a failure or a veto in a hook that shapes the run names the plugin behind it.

A hook cannot end the process: ``sys.exit`` or any other ``BaseException`` (but Ctrl-C) from a
hook is a failure of that hook like any exception, so the run's outcome, and the command's exit
code, say whether it committed. Entry points are loaded by :mod:`cascade.entrypoints`, with its
switches ``CASCADE_DISABLE_PLUGIN_AUTOLOAD`` and ``CASCADE_BLOCKED_PLUGINS``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any

import pluggy

from cascade import hookspecs
from cascade.entrypoints import HOOKS_GROUP, load
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

hookimpl = pluggy.HookimplMarker("cascade")

RUN_HOOK = "cascade_run"


# --- who answered what: the record of one call of a shaping hook -------------------------------------


@dataclass
class _Call:
    """One call of a shaping hook, as its guarded implementations saw it."""

    hook: str
    rows: Any = None  # cascade_after_extract: the table the next implementation receives
    failures: list[tuple[BaseException, str]] = field(default_factory=list)  # (error, the plugin that raised it)
    answers: list[tuple[str, object]] = field(default_factory=list)  # (plugin, what it returned), in order

    def blame(self, error: BaseException) -> str | None:
        return next((plugin for raised, plugin in self.failures if raised is error), None)

    def author(self, value: object) -> str:
        """The plugin that last returned ``value`` itself (implementations and wrappers both count)."""
        return next((plugin for plugin, given in reversed(self.answers) if given is value), "an unknown plugin")

    def attribute(self, values: Sequence[object]) -> list[tuple[str, object]]:
        """Each value with the plugin that returned it; a value a wrapper put in the list is the wrapper's."""
        unused = list(self.answers)
        named = []
        for value in values:
            index = next((i for i, (_, given) in enumerate(unused) if given is value), None)
            named.append((unused.pop(index)[0] if index is not None else self.author(values), value))
        return named


_CALL: ContextVar[_Call | None] = ContextVar("cascade_hook_call", default=None)


def _current(hook: str) -> _Call | None:
    call = _CALL.get()
    return call if call is not None and call.hook == hook else None


# --- guards: pluggy still calls every implementation; the guard decides what its failure does ------------


def _guard(impl: pluggy.HookImpl, hook: str) -> None:
    """Replace ``impl.function`` by a guard with the same arguments, once.

    pluggy (checked on 1.5.0, the lowest allowed, and 1.7.0) picks an implementation's
    arguments by ``impl.argnames``, read when it registered, and calls ``impl.function`` at each
    call: ``function(*args)``, or ``function(*args, **kwargs)`` for arguments with defaults; a
    wrapper's function must be a generator function. The guard keeps all of that, so ordering,
    argument subsets, wrappers and ``firstresult`` remain pluggy's. ``HookImpl.function`` is
    typed ``Final`` but is a plain slot; replacing it is the one liberty taken with pluggy.
    """
    function = impl.function
    if getattr(function, "_cascade_guarded", False):
        return
    if impl.hookwrapper:
        guarded = _old_style_wrapper_guard(function, hook, impl.plugin_name)
    elif impl.wrapper:
        guarded = _wrapper_guard(function, hook, impl.plugin_name)
    else:
        guarded = _implementation_guard(function, hook, impl.plugin_name, impl.argnames)
    functools.update_wrapper(guarded, function)
    guarded._cascade_guarded = True  # type: ignore[attr-defined]
    setattr(impl, "function", guarded)  # noqa: B010 (the attribute is Final to type checkers only)


def _absorb(hook: str, plugin: str, error: BaseException, call: _Call | None) -> bool:
    """Deal with an implementation's own failure: True when absorbed (an observer's: logged).

    Ctrl-C is not absorbed, nor a shaping hook's failure, which is noted for the caller to name
    the plugin.
    """
    if isinstance(error, KeyboardInterrupt):
        return False
    if hook in hookspecs.SHAPING_HOOKS or hook not in _SPECS:
        if call is not None:
            call.failures.append((error, plugin))
        return False
    from cascade.logger import log
    from cascade.redaction import redact

    message = f"exit code {error.code}" if isinstance(error, SystemExit) else redact(str(error))
    log.error("hook failed", hook=hook, plugin=plugin, error=type(error).__name__, message=message)
    return True


def _implementation_guard(
    function: Callable[..., Any], hook: str, plugin: str, argnames: Sequence[str]
) -> Callable[..., Any]:
    rows_at = argnames.index("rows") if hook == "cascade_after_extract" and "rows" in argnames else None

    def guarded(*args: Any, **kwargs: Any) -> Any:
        call = _current(hook)
        if call is not None and rows_at is not None:  # the chain: the previous implementation's rows
            args = (*args[:rows_at], call.rows, *args[rows_at + 1 :])
        elif call is not None and "rows" in kwargs:  # declared with a default
            kwargs = {**kwargs, "rows": call.rows}
        try:
            value = function(*args, **kwargs)
        except BaseException as error:
            if _absorb(hook, plugin, error, call):
                return None
            raise
        if call is not None and value is not None:
            if hook == "cascade_after_extract":
                refused = changed_beyond_rows(call.rows, value)
                if refused is not None:
                    refusal = RefusedTableError(refused)
                    call.failures.append((refusal, plugin))
                    raise refusal
                call.rows = value
            call.answers.append((plugin, value))
        return value

    return guarded


def _resume(teardown: Generator[Any, Any, Any], thrown: BaseException | None, sent: object) -> tuple[Any, Any]:
    """Resume a wrapper after the implementations ran: ``(returned, None)`` or ``(None, raised)``."""
    try:
        if thrown is not None:
            teardown.throw(thrown)
        else:
            teardown.send(sent)
    except StopIteration as stop:
        return stop.value, None
    except BaseException as error:
        return None, error
    teardown.close()
    return None, RuntimeError("a hook wrapper yielded twice")


def _start(function: Callable[..., Any], args: Any, kwargs: Any) -> tuple[Any, BaseException | None]:
    """Run a wrapper up to its ``yield``: ``(generator, None)``, or ``(None, its failure)``."""
    try:
        teardown = function(*args, **kwargs)
        next(teardown)
    except StopIteration:
        return None, RuntimeError(f"hook wrapper {function.__name__} did not yield")
    except BaseException as error:
        return None, error
    return teardown, None


def _wrapper_guard(function: Callable[..., Any], hook: str, plugin: str) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
        call = _current(hook)
        teardown, error = _start(function, args, kwargs)
        if error is not None and not _absorb(hook, plugin, error, call):
            raise error
        thrown: BaseException | None = None
        try:
            sent = yield
        except BaseException as inner:  # an implementation failed: pluggy throws it into wrappers
            thrown, sent = inner, None
        if teardown is None:  # its set-up failed and was logged: pass the outcome on untouched
            if thrown is not None:
                raise thrown
            return sent
        value, error = _resume(teardown, thrown, sent)
        if error is None:
            if call is not None and value is not sent:
                call.answers.append((plugin, value))
            return value
        if error is thrown or not _absorb(hook, plugin, error, call):
            raise error
        if thrown is not None:
            raise thrown
        return sent

    return guarded


def _old_style_wrapper_guard(function: Callable[..., Any], hook: str, plugin: str) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Generator[None, pluggy.Result[Any], None]:
        call = _current(hook)
        teardown, error = _start(function, args, kwargs)
        if error is not None and not _absorb(hook, plugin, error, call):
            raise error
        outcome = yield
        if teardown is None:
            return
        before = _peek(outcome)
        _, error = _resume(teardown, None, outcome)
        if error is not None and not _absorb(hook, plugin, error, call):
            raise error
        after = _peek(outcome)
        if call is not None and after[0] is not before[0] and after[0] is not None:
            call.failures.append((after[0], plugin))  # it forced an exception
        elif call is not None and after[1] is not before[1]:
            call.answers.append((plugin, after[1]))  # it forced a result

    return guarded


def _peek(outcome: pluggy.Result[Any]) -> tuple[BaseException | None, Any]:
    return outcome.exception, None if outcome.exception is not None else outcome.get_result()


class RefusedTableError(ValueError):
    """A ``cascade_after_extract`` implementation returned a table Cascade cannot take."""


# --- the manager ------------------------------------------------------------------------------------------------


_SPECS = frozenset(name for name in dir(hookspecs) if name.startswith("cascade_"))


class GuardedPluginManager(pluggy.PluginManager):
    """pluggy's manager, guarding each implementation as a plugin registers (see :func:`_guard`)."""

    def __init__(self) -> None:
        super().__init__("cascade")
        self.add_hookspecs(hookspecs)
        self.announced: dict[str, CascadeAsset[Any, Any]] = {}  # every asset registered in this process

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        if registered is None:
            return None
        callers = self.get_hookcallers(plugin) or []
        impls = [(caller.name, impl) for caller in callers for impl in caller.get_hookimpls() if impl.plugin is plugin]
        if any(hook == RUN_HOOK and not (impl.wrapper or impl.hookwrapper) for hook, impl in impls):
            self.unregister(plugin)
            raise pluggy.PluginValidationError(
                plugin, f"plugin {registered!r}: {RUN_HOOK} takes wrappers only (@hookimpl(wrapper=True))"
            )
        for hook, impl in impls:
            _guard(impl, hook)
        if self.announced and any(hook == "cascade_asset_registered" for hook, _ in impls):
            self._announce_to(plugin)
        return registered

    def _announce_to(self, plugin: object) -> None:
        """The assets registered before ``plugin``, announced to it alone (pluggy's historic replay)."""
        caller = self.hook.cascade_asset_registered
        others = [impl.plugin for impl in caller.get_hookimpls() if impl.plugin is not plugin]
        late = self.subset_hook_caller("cascade_asset_registered", remove_plugins=others)
        for asset in list(self.announced.values()):
            late(asset=asset)


class Hooks:
    """Typed wrappers around every hook in :mod:`cascade.hookspecs`."""

    def __init__(self) -> None:
        self.manager = GuardedPluginManager()
        self.failures: list[PluginLoadError] = []

    # --- plugins ----------------------------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register an object or module holding ``@hookimpl`` functions; returns its name."""
        registered = self.manager.register(plugin, name=name)
        assert registered is not None, f"plugin {name!r} is blocked"
        return registered

    def unregister(self, name: str) -> None:
        self.manager.unregister(name=name)

    def load_entry_points(self) -> None:
        """Load the ``cascade.hooks`` entry points once per process."""
        load(HOOKS_GROUP, self._load_entry_point, once=True)

    def _load_entry_point(self, entry_point: EntryPoint, name: str) -> None:
        if self.manager.has_plugin(name):
            return
        try:
            self.manager.register(entry_point.load(), name=name)
        except Exception as error:  # a broken hook plugin must not stop runs
            self.failures.append(PluginLoadError(name, error))

    # --- observing hooks ----------------------------------------------------------------------------------

    def config_loaded(self, config: CascadeConfig) -> None:
        self.manager.hook.cascade_config_loaded(config=config)

    def asset_registered(self, asset: CascadeAsset[Any, Any]) -> None:
        self.manager.announced[asset.spec.name] = asset
        self.manager.hook.cascade_asset_registered(asset=asset)

    def run_started(self, context: RunContext) -> None:
        self.manager.hook.cascade_run_started(context=context)

    def after_validation(self, context: RunContext, report: ValidationReport) -> None:
        self.manager.hook.cascade_after_validation(context=context, report=report)

    def after_commit(self, context: RunContext, result: IngestionResult) -> None:
        self.manager.hook.cascade_after_commit(context=context, result=result)

    def run_failed(self, context: RunContext, error: BaseException) -> None:
        self.manager.hook.cascade_run_failed(context=context, error=error)

    def run(self, context: RunContext, body: Callable[[], IngestionResult]) -> IngestionResult:
        """``body`` as Cascade's own ``cascade_run``, inside every wrapper; its outcome is the run's."""
        results: list[IngestionResult] = []
        errors: list[BaseException] = []

        def cascade_run(context: RunContext) -> IngestionResult:
            try:
                results.append(body())
            except BaseException as error:
                errors.append(error)
                raise
            return results[0]

        try:
            self.manager.hook.cascade_run.call_extra([cascade_run], {"context": context})
        except BaseException as error:  # the run's own error, unless a wrapper was stopped by Ctrl-C
            if not (results or errors) or (isinstance(error, KeyboardInterrupt) and error not in errors):
                raise
        if errors:
            raise errors[0]
        return results[0]

    # --- shaping hooks ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _shaping(self, hook: str, context: RunContext) -> Iterator[_Call]:
        """Record the call for the guards; a failure becomes a :class:`HookError` naming its plugin."""
        call = _Call(hook)
        token = _CALL.set(call)
        try:
            yield call
        except BaseException as error:
            plugin = call.blame(error)
            if plugin is None:  # Ctrl-C, or pluggy's own error
                raise
            raise _hook_error(hook, plugin, context, error) from error
        finally:
            _CALL.reset(token)

    def after_extract(self, context: RunContext, rows: pa.Table) -> pa.Table:
        """The rows as the implementations leave them; a failure or a refused table aborts, naming the plugin."""
        with self._shaping("cascade_after_extract", context) as call:
            call.rows = rows
            replacements = self.manager.hook.cascade_after_extract(context=context, rows=rows)
        given = replacements if isinstance(replacements, list) else [replacements]
        final = next((table for table in reversed(given) if table is not None), None)
        if final is None:
            return rows
        if final is not call.rows:  # a wrapper put it there: check it as the implementations' are
            refused = changed_beyond_rows(rows, final)
            if refused is not None:
                author = call.author(replacements)
                raise _hook_error("cascade_after_extract", author, context, RefusedTableError(refused))
        result: pa.Table = final
        return result

    def before_commit(self, context: RunContext, plan: MergePlan) -> None:
        """Raise :class:`CommitVetoedError` naming the plugin whose reason stopped the commit."""
        with self._shaping("cascade_before_commit", context) as call:
            reason = self.manager.hook.cascade_before_commit(context=context, plan=plan)
        if reason is not None:
            raise CommitVetoedError(
                str(reason), plugin=call.author(reason), asset=context.asset, partition=context.partition_date
            )

    def audit(self, context: RunContext, table: Table, snapshot_id: int) -> list[tuple[str, str]]:
        """Every failing reason, as (plugin, reason); a raising audit aborts, naming its plugin."""
        with self._shaping("cascade_audit", context) as call:
            reasons = self.manager.hook.cascade_audit(context=context, table=table, snapshot_id=snapshot_id)
        given = reasons if isinstance(reasons, list) else [reasons]
        return [(plugin, str(reason)) for plugin, reason in call.attribute(given) if reason is not None]


def _hook_error(hook: str, plugin: str, context: RunContext, error: BaseException) -> HookError:
    from cascade.redaction import redact

    if isinstance(error, RefusedTableError):
        message = str(error)
    elif isinstance(error, SystemExit):
        message = f"SystemExit: exit code {error.code}"
    else:
        message = f"{type(error).__name__}: {redact(str(error))}"
    return HookError(message, plugin=plugin, hook=hook, asset=context.asset, partition=context.partition_date)


_hooks = Hooks()


def hooks() -> Hooks:
    """The process's hook manager, with the ``cascade.hooks`` entry points loaded."""
    _hooks.load_entry_points()
    return _hooks


def announce_asset(asset: CascadeAsset[Any, Any]) -> None:
    """Call ``cascade_asset_registered`` without loading entry points: it runs while plugin modules
    import. Plugins loaded later are told then (see :meth:`GuardedPluginManager.register`)."""
    _hooks.asset_registered(asset)


def register_hooks(plugin: object, name: str | None = None) -> str:
    """Register hook implementations in code (applications, notebooks, tests); returns the plugin's name."""
    return _hooks.register(plugin, name)


def unregister_hooks(name: str) -> None:
    """Unregister the plugin registered under ``name``."""
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
        return f"returned {type(returned).__name__}, not None or a pyarrow Table"
    if not returned.schema.equals(received.schema):
        return f"returned the schema {returned.schema.names} instead of the one it received {received.schema.names}"
    stamps = pc.unique(received.column(INGESTED_AT))
    if returned.num_rows and not pc.all(pc.is_in(returned.column(INGESTED_AT), value_set=stamps)).as_py():
        return f"changed {INGESTED_AT!r}, which Cascade sets"
    return None
