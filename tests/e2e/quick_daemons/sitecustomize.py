"""Imported at start-up by the processes of the test's ``dagster dev`` (PYTHONPATH points here).

Dagster's backfill daemon looks for new backfills every 30 s, a constant
(``dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS``) rather than a setting. A range
backfill would wait for that tick for up to half a minute; here the backfill daemon ticks every
2 s, as ``dagster.yaml`` already makes the run queue do. The asset daemon falls back to the same constant
unless ``auto_materialize.minimum_interval_seconds`` is set, so the test's ``dagster.yaml`` sets it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

CONTROLLER = "dagster._daemon.controller"
INTERVAL_SECONDS = 2


class QuickDaemons(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != CONTROLLER:
            return None
        sys.meta_path.remove(self)  # find the real module, then set the constant once it has run
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            module.DEFAULT_DAEMON_INTERVAL_SECONDS = INTERVAL_SECONDS  # type: ignore[attr-defined]

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, QuickDaemons())
