"""What an asset function may receive besides its partition date."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from cascade.config import CascadeConfig
from cascade.redaction import remember_secrets


@dataclass(frozen=True)
class RunContext:
    """The run an asset function is called for. Declare a ``context`` parameter to receive it."""

    asset: str
    partition_date: str
    branch: str
    run_id: str
    config: CascadeConfig
    deadline: float = field(default=float("inf"))
    max_runtime_seconds: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def partition_day(self) -> dt.date:
        return dt.date.fromisoformat(self.partition_date)

    def remaining_seconds(self) -> float:
        """Seconds left in the asset's runtime budget (``max_runtime_seconds``)."""
        return self.deadline - time.monotonic()

    def settings(self, plugin: str) -> Mapping[str, Any]:
        """The plugin's configuration table, ``[plugins.<plugin>]``."""
        return self.config.settings(plugin)

    def setting(self, plugin: str, key: str, env: str | None = None, default: str | None = None) -> str | None:
        """One plugin setting: ``[plugins.<plugin>] <key>``, else the environment variable ``env``."""
        value = self.config.settings(plugin).get(key)
        if value is None and env is not None:
            value = os.environ.get(env)
        return default if value is None else str(value)

    def secret(self, plugin: str, key: str, env: str | None = None) -> str | None:
        """Like :meth:`setting`, and the value is masked in every log line, error and trace."""
        value = self.setting(plugin, key, env)
        remember_secrets([value])
        return value


_CURRENT_RUN: ContextVar[RunContext | None] = ContextVar("cascade_current_run", default=None)


def current_run() -> RunContext | None:
    """The run whose asset function is executing, if any (sources use it to find their budget)."""
    return _CURRENT_RUN.get()


@contextmanager
def running(context: RunContext) -> Iterator[RunContext]:
    token = _CURRENT_RUN.set(context)
    try:
        yield context
    finally:
        _CURRENT_RUN.reset(token)
