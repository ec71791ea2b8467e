"""Ready-made definitions: ``dagster dev -m cascade_dagster.definitions`` needs no user code."""

import dagster as dg

from cascade_dagster.assets import build_definitions
from cascade_dagster.freshness import freshness_definitions
from cascade_dagster.maintenance import maintenance_definitions

defs = dg.Definitions.merge(build_definitions(), maintenance_definitions(), freshness_definitions())
