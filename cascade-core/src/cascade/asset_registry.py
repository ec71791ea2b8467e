"""The asset registry: every asset registers itself here when its module is imported.

:mod:`cascade.discovery` imports the ``cascade.assets`` entry points that fill it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cascade.entrypoints import loading_plugin
from cascade.errors import DuplicateAssetError, PluginLoadError, UnknownAssetError

if TYPE_CHECKING:
    from cascade.config import CascadeConfig
    from cascade.ingestion import CascadeAsset


@dataclass
class Registry:
    """Assets by name and by table identifier. Mutable on purpose: it is the process's catalogue."""

    by_name: dict[str, CascadeAsset[Any, Any]] = field(default_factory=dict)
    by_table: dict[str, CascadeAsset[Any, Any]] = field(default_factory=dict)
    by_resolved_table: dict[str, CascadeAsset[Any, Any]] = field(default_factory=dict)  # as discover() mapped them
    failures: dict[str, PluginLoadError] = field(default_factory=dict)

    def add(self, asset: CascadeAsset[Any, Any]) -> None:
        spec = asset.spec
        for index, key in ((self.by_name, spec.name), (self.by_table, spec.identifier)):
            other = index.get(key)
            if other is None or other is asset or _same_definition(other, asset):
                continue
            what = "asset name" if index is self.by_name else "table"
            raise DuplicateAssetError(
                f"{what} {key!r} is claimed twice: by asset {other.spec.name!r} of plugin {other.spec.plugin!r} "
                f"and by asset {spec.name!r} of plugin {spec.plugin!r}"
            )
        self.by_name[spec.name] = asset
        self.by_table[spec.identifier] = asset

    def get(self, name: str) -> CascadeAsset[Any, Any]:
        """Look an asset up by its name or its ``namespace.table`` identifier."""
        asset = self.by_name.get(name) or self.by_resolved_table.get(name) or self.by_table.get(name)
        if asset is None:
            known = ", ".join(sorted(self.by_name)) or "none"
            raise UnknownAssetError(f"no asset named {name!r} (registered assets: {known})")
        return asset

    def assets(self) -> list[CascadeAsset[Any, Any]]:
        return sorted(self.by_name.values(), key=lambda a: a.spec.name)

    def resolve_tables(self, config: CascadeConfig) -> dict[str, CascadeAsset[Any, Any]]:
        """Each asset's table after ``[namespaces]``; two assets resolving to one table are refused.

        One table has one owner: two assets merging into it would overwrite each other's rows.
        """
        from cascade.naming import table_identifier

        owners: dict[str, CascadeAsset[Any, Any]] = {}
        for asset in self.assets():
            table = ".".join(table_identifier(asset.spec, config))
            other = owners.get(table)
            if other is not None and not _same_definition(other, asset):
                raise DuplicateAssetError(
                    f"table {table!r} is claimed twice (after [namespaces]): by asset {other.spec.name!r} "
                    f"(group {other.spec.group!r}) of plugin {other.spec.plugin!r} and by asset {asset.spec.name!r} "
                    f"(group {asset.spec.group!r}) of plugin {asset.spec.plugin!r}; give one a table_name or namespace "
                    "of its own, or change the [namespaces] mapping"
                )
            owners[table] = asset
        self.by_resolved_table = owners
        return owners


def _same_definition(a: CascadeAsset[Any, Any], b: CascadeAsset[Any, Any]) -> bool:
    """A module imported twice (reload, ``__main__``) re-decorates the same function: not a clash."""
    return (a.fn.__module__, a.fn.__qualname__) == (b.fn.__module__, b.fn.__qualname__)


_registry = Registry()


def registry() -> Registry:
    return _registry


def register(asset: CascadeAsset[Any, Any]) -> None:
    """Add an asset to the registry and tell the hook plugins; called by ``@cascade_ingestion``."""
    plugin = loading_plugin()
    if plugin is not None:
        from dataclasses import replace

        asset.spec = replace(asset.spec, plugin=plugin)
    _registry.add(asset)
    from cascade.plugins import announce_asset

    announce_asset(asset)


@contextlib.contextmanager
def isolated_registry() -> Iterator[Registry]:
    """Swap in an empty registry for the duration (tests, notebooks)."""
    global _registry
    saved, _registry = _registry, Registry()
    try:
        yield _registry
    finally:
        _registry = saved
