"""Cascade's configuration as a Dagster resource, set per deployment the usual Dagster way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

import cascade
from cascade import CascadeConfig


class CascadeResource(ConfigurableResource):  # type: ignore[type-arg]
    """Where Cascade keeps its catalog and pipelines, and which branch it writes by default.

    Unset fields fall back to ``cascade.toml`` and ``CASCADE_*`` variables. Secrets go through
    ``EnvVar``: ``CascadeResource(catalog={"uri": EnvVar("CASCADE_CATALOG_URI")})``.
    """

    home: str | None = Field(default=None, description="Cascade home (pipelines, embedded catalog).")
    branch: str | None = Field(default=None, description="Default branch when a run names none.")
    catalog: dict[str, str] = Field(default_factory=dict, description="pyiceberg catalog properties.")

    def cascade_config(self) -> CascadeConfig:
        config = cascade.load_config()
        if self.home:
            config = replace(config, home=Path(self.home))
        if self.branch:
            config = replace(config, branch=self.branch)
        if self.catalog:
            config = replace(config, catalog_properties={**config.catalog_properties, **self.catalog})
        return config
