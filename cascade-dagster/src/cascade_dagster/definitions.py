"""Ready-made definitions: ``dagster dev -m cascade_dagster.definitions`` needs no user code."""

from cascade_dagster.assets import build_definitions

defs = build_definitions()
