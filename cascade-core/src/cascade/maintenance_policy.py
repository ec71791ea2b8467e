"""What ``cascade maintain`` and the Dagster maintenance job do by default: ``[maintenance]`` in ``cascade.toml``.

    [maintenance]
    expire_older_than = "7d"       # snapshots older than this may be expired ...
    retain_last = 1                # ... but each branch keeps at least its last N
    compact = false                # rewrite small data files per partition
    target_file_size = "128MB"
    rewrite_manifests = false
    remove_orphans = false
    orphan_older_than = "3d"       # never remove a file younger than this
    schedule = "0 3 * * *"         # the Dagster maintenance schedule

Or ``CASCADE_MAINTENANCE__RETAIN_LAST=5`` and the like.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from cascade.errors import ConfigurationError

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b?)\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_duration(value: str | int | float, *, what: str = "duration") -> dt.timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` or plain seconds."""
    match = DURATION.match(str(value).lower())
    if match is None:
        raise ConfigurationError(f"{what} {value!r} is not a duration; use a number with s, m, h, d or w (e.g. 7d)")
    return dt.timedelta(seconds=float(match.group(1)) * DURATION_UNITS[match.group(2)])


def parse_size(value: str | int, *, what: str = "size") -> int:
    """``"128MB"``, ``"64MiB"``, ``"1g"`` or plain bytes."""
    match = SIZE.match(str(value))
    if match is None:
        raise ConfigurationError(f"{what} {value!r} is not a size; use bytes or a number with KB, MB, GB (or KiB...)")
    unit = match.group(2).lower().rstrip("b")
    return int(float(match.group(1)) * SIZE_UNITS[unit])


@dataclass(frozen=True)
class MaintenancePolicy:
    """The defaults of every maintenance step; the command's options override them."""

    expire_older_than: dt.timedelta = dt.timedelta(days=7)
    retain_last: int = 1
    compact: bool = False
    target_file_size: int = 128 * 1024 * 1024
    rewrite_manifests: bool = False
    remove_orphans: bool = False
    orphan_older_than: dt.timedelta = dt.timedelta(days=3)
    schedule: str = "0 3 * * *"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> MaintenancePolicy:
        known = {f.name for f in fields(cls)}
        unknown = set(settings) - known
        if unknown:
            raise ConfigurationError(f"unknown [maintenance] setting(s) {sorted(unknown)}; valid: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in settings.items():
            what = f"[maintenance] {name}"
            if name in ("expire_older_than", "orphan_older_than"):
                values[name] = parse_duration(value, what=what)
            elif name == "target_file_size":
                values[name] = parse_size(value, what=what)
            elif name == "retain_last":
                values[name] = _whole(value, what)
            elif name == "schedule":
                values[name] = str(value)
            else:
                values[name] = _flag(value, what)
        policy = cls(**values)
        if policy.retain_last < 1:
            raise ConfigurationError(f"[maintenance] retain_last must be at least 1, got {policy.retain_last}")
        if policy.target_file_size < 1:
            raise ConfigurationError(f"[maintenance] target_file_size must be positive, got {policy.target_file_size}")
        return policy


def _whole(value: object, what: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ConfigurationError(f"{what} must be a whole number, got {value!r}") from None


def _flag(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{what} must be true or false, got {value!r}")
