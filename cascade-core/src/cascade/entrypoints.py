"""Entry points: the one place plugin modules are imported, for ``cascade.assets`` and ``cascade.hooks``.

``CASCADE_DISABLE_PLUGIN_AUTOLOAD=1`` turns loading off; ``CASCADE_BLOCKED_PLUGINS=a,b`` skips the
named plugins (entry-point or distribution names). A plugin is named by its distribution.

Loading is re-entrant. A plugin module may do anything while it imports: register assets, which
tells the hook plugins, or ask for plugins itself. A request made while this thread is loading a
group is run after that group, by the same thread: nothing waits on itself, and no module is
handed over half-imported (one that holds assets and hooks is imported once, then registered
whole). Other threads wait until loading is done.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

ASSETS_GROUP = "cascade.assets"
HOOKS_GROUP = "cascade.hooks"
DISABLE_AUTOLOAD_ENV = "CASCADE_DISABLE_PLUGIN_AUTOLOAD"
BLOCKED_PLUGINS_ENV = "CASCADE_BLOCKED_PLUGINS"

LoadOne = Callable[[EntryPoint, str], None]
"""Loads one entry point, given it and its plugin's name; records its own failures."""

_loading_plugin: contextvars.ContextVar[str | None] = contextvars.ContextVar("cascade_loading_plugin", default=None)


def loading_plugin() -> str | None:
    """The plugin whose entry point is being loaded right now, if any (assets are named after it)."""
    return _loading_plugin.get()


def plugin_name(entry_point: EntryPoint) -> str:
    """A plugin is named by its distribution when known, else by its entry point."""
    dist = getattr(entry_point, "dist", None)
    return dist.name if dist is not None else entry_point.name


def blocked_plugins() -> set[str]:
    """Plugins named in ``CASCADE_BLOCKED_PLUGINS`` (entry-point or distribution names)."""
    return {name.strip() for name in os.environ.get(BLOCKED_PLUGINS_ENV, "").split(",") if name.strip()}


def autoload_enabled() -> bool:
    """False when ``CASCADE_DISABLE_PLUGIN_AUTOLOAD`` is set to a true value."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").lower() in ("", "0", "false", "no")


class _Loader:
    """One lock for every group, re-entrant, with a queue for requests made while loading."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.busy = False  # only ever True for the thread holding the lock
        self.queue: list[tuple[str, LoadOne]] = []
        self.loaded: set[str] = set()  # the groups loaded once per process


_loader = _Loader()


def load(group: str, load_one: LoadOne, *, once: bool = False) -> None:
    """Call ``load_one`` for every entry point of ``group`` that is not blocked, in this thread.

    ``once`` loads the group the first time only. Called again while loading (from a plugin
    module being imported), the request is queued and this returns at once.
    """
    if not autoload_enabled():
        return
    with _loader.lock:
        if once and group in _loader.loaded:
            return
        if once:
            _loader.loaded.add(group)
        _loader.queue.append((group, load_one))
        if _loader.busy:
            return
        _loader.busy = True
        try:
            while _loader.queue:
                _load_group(*_loader.queue.pop(0))
        finally:
            _loader.busy = False
            for left_over, _ in _loader.queue:  # a failure stopped loading: those groups were not loaded
                _loader.loaded.discard(left_over)
            _loader.queue.clear()


def _load_group(group: str, load_one: LoadOne) -> None:
    blocked = blocked_plugins()
    for entry_point in entry_points(group=group):
        plugin = plugin_name(entry_point)
        if plugin in blocked or entry_point.name in blocked:
            continue
        token = _loading_plugin.set(plugin)
        try:
            load_one(entry_point, plugin)
        finally:
            _loading_plugin.reset(token)
