"""Finding assets: every ``cascade.assets`` entry point loaded (through :mod:`cascade.entrypoints`,
which also holds the switches ``CASCADE_DISABLE_PLUGIN_AUTOLOAD`` and ``CASCADE_BLOCKED_PLUGINS``),
each asset named with its plugin."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cascade.asset_registry import registry
from cascade.entrypoints import ASSETS_GROUP, load
from cascade.errors import DuplicateAssetError, PluginLoadError

if TYPE_CHECKING:
    from cascade.config import CascadeConfig
    from cascade.ingestion import CascadeAsset


@dataclass(frozen=True)
class Discovery:
    """What ``discover()`` found: the assets, and the plugins that failed to load."""

    assets: tuple[CascadeAsset[Any, Any], ...]
    failures: tuple[PluginLoadError, ...]
    tables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Each asset's table (``namespace.table`` after ``[namespaces]``), by asset name."""


def discover(config: CascadeConfig | None = None) -> Discovery:
    """Load every ``cascade.assets`` entry point and return all registered assets.

    A plugin that fails to import is recorded in ``Discovery.failures`` and does not stop the
    others. Two assets claiming the same asset name, or the same table once ``config``'s
    ``[namespaces]`` (default: :func:`cascade.load_config`) maps their groups, raise
    :class:`DuplicateAssetError` naming both.
    """
    load(ASSETS_GROUP, _load_entry_point)
    from cascade.config import load_config

    found = registry()
    tables = {asset.spec.name: table for table, asset in found.resolve_tables(config or load_config()).items()}
    return Discovery(tuple(found.assets()), tuple(found.failures.values()), MappingProxyType(tables))


def _load_entry_point(entry_point: EntryPoint, plugin: str) -> None:
    from cascade.ingestion import CascadeAsset

    try:
        loaded = entry_point.load()
    except DuplicateAssetError:
        raise
    except Exception as error:  # a broken plugin must not hide the others
        registry().failures[plugin] = PluginLoadError(plugin, error)
        return
    if isinstance(loaded, CascadeAsset) and loaded.spec.name not in registry().by_name:
        registry().add(loaded)
    _attribute_to_plugin(entry_point.module, plugin)
    registry().failures.pop(plugin, None)


def _attribute_to_plugin(module: str, plugin: str) -> None:
    """Name the plugin on assets of a module that was imported before discovery ran."""
    from dataclasses import replace

    for asset in registry().by_name.values():
        owner = asset.fn.__module__
        if owner == module or owner.startswith(module + "."):
            asset.spec = replace(asset.spec, plugin=plugin)
