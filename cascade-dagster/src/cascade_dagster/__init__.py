"""The Dagster adapter: every Cascade asset as a Dagster asset, with schedule, freshness and checks."""

from cascade_dagster.assets import CascadeRunConfig, build_definitions, days_to_refresh
from cascade_dagster.resource import CascadeResource
from cascade_dagster.translator import CascadeTranslator

__version__ = "0.1.0"
__all__ = ["CascadeResource", "CascadeRunConfig", "CascadeTranslator", "build_definitions", "days_to_refresh"]
