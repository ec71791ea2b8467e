"""The Dagster adapter: every Cascade asset as a Dagster asset, with schedule, freshness and checks."""

from cascade_dagster.assets import CascadeRunConfig, build_definitions, days_to_refresh
from cascade_dagster.component import CascadeAssetsComponent
from cascade_dagster.io_manager import IO_MANAGER_KEY, CascadeIOManager, cascade_io_manager
from cascade_dagster.resource import CascadeResource
from cascade_dagster.translator import CascadeTranslator

__version__ = "0.1.0"
__all__ = [
    "IO_MANAGER_KEY",
    "CascadeAssetsComponent",
    "CascadeIOManager",
    "CascadeResource",
    "CascadeRunConfig",
    "CascadeTranslator",
    "build_definitions",
    "cascade_io_manager",
    "days_to_refresh",
]
