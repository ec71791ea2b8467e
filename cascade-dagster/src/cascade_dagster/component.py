"""A Dagster Components entry: ``dg`` projects add Cascade assets with one ``defs.yaml``.

# defs/cascade/defs.yaml
type: cascade_dagster.CascadeAssetsComponent
attributes:
  assets: [glucose]        # omit for every installed Cascade asset
  home: /srv/cascade
"""

from __future__ import annotations

import dagster as dg

from cascade import UnknownAssetError
from cascade_dagster.assets import build_definitions, discovered_assets
from cascade_dagster.resource import CascadeResource


class CascadeAssetsComponent(dg.Component, dg.Model, dg.Resolvable):
    """Installed Cascade assets as Dagster assets, configured like ``build_definitions``."""

    assets: list[str] | None = None
    home: str | None = None
    branch: str | None = None
    catalog: dict[str, str] | None = None  # Dagster 1.12's Resolvable cannot take a default_factory
    strict_plugins: bool | None = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        found = discovered_assets(self.strict_plugins)
        chosen = found
        if self.assets is not None:
            by_name = {asset.spec.name: asset for asset in found}
            unknown = sorted(set(self.assets) - set(by_name))
            if unknown:
                raise UnknownAssetError(
                    f"CascadeAssetsComponent: no asset named {', '.join(unknown)} "
                    f"(installed: {', '.join(sorted(by_name)) or 'none'})"
                )
            chosen = [by_name[name] for name in self.assets]
        resource = CascadeResource(home=self.home, branch=self.branch, catalog=self.catalog or {})
        return build_definitions(chosen, config=resource, strict_plugins=self.strict_plugins)
