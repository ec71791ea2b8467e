"""How sources retry and wait: the ``[http]`` table of ``cascade.toml`` (see :mod:`cascade.http`)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from cascade.errors import ConfigurationError


@dataclass(frozen=True)
class HttpPolicy:
    """How sources retry and wait. Every wait is also bounded by the run's remaining budget."""

    max_attempts: int = 5
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    timeout_seconds: float = 30.0
    max_wait_seconds: float = 900.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> HttpPolicy:
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(settings) - set(known)
        if unknown:
            raise ConfigurationError(f"unknown [http] setting(s) {sorted(unknown)}; valid: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in settings.items():
            cast = int if name == "max_attempts" else float
            try:
                values[name] = cast(value)
            except (TypeError, ValueError):
                raise ConfigurationError(f"[http] {name} must be a number, got {value!r}") from None
            if values[name] < (1 if name == "max_attempts" else 0):
                raise ConfigurationError(f"[http] {name} must be positive, got {value!r}")
        return cls(**values)

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1-based): doubling, capped, with jitter."""
        base = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return float(base * random.uniform(0.5, 1.0))
