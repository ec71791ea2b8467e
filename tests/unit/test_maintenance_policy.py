"""``[maintenance]`` settings and the coverage ledger's encoding."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from cascade import load_config
from cascade.errors import ConfigurationError
from cascade.maintenance_policy import MaintenancePolicy, parse_duration, parse_size
from cascade.tables import decode_coverage, encode_coverage


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7d", dt.timedelta(days=7)), ("12h", dt.timedelta(hours=12)), ("90", dt.timedelta(seconds=90)),
     ("30m", dt.timedelta(minutes=30)), ("2w", dt.timedelta(weeks=2)), ("0", dt.timedelta(0))],
)  # fmt: skip
def test_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("128MB", 128_000_000), ("64MiB", 64 * 2**20), ("1000", 1000)])
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_defaults_then_file_then_environment(tmp_path: Path) -> None:
    assert load_config(tmp_path, environ={}).maintenance == MaintenancePolicy()
    (tmp_path / "cascade.toml").write_text(
        '[maintenance]\nexpire_older_than = "2d"\nretain_last = 5\ncompact = true\ntarget_file_size = "1MiB"\n'
    )
    config = load_config(tmp_path, environ={"CASCADE_MAINTENANCE__RETAIN_LAST": "9"})
    assert config.maintenance == MaintenancePolicy(
        expire_older_than=dt.timedelta(days=2), retain_last=9, compact=True, target_file_size=2**20
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"retain_last": "0"}, "retain_last must be at least 1"),
        ({"expire_older_than": "soon"}, "[maintenance] expire_older_than 'soon' is not a duration"),
        ({"compact": "maybe"}, "[maintenance] compact must be true or false"),
        ({"keep": 1}, "unknown [maintenance] setting(s) ['keep']"),
    ],
)
def test_bad_settings_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        MaintenancePolicy.from_settings(settings)


def test_coverage_round_trips_compactly() -> None:
    days = {(dt.date(2024, 1, 1) + dt.timedelta(days=n)).isoformat() for n in range(366)} - {"2024-03-01"}
    coverage = {"glucose": days | {"20240501", "all"}, "events": {"2024-05-01"}}
    encoded = encode_coverage(coverage)
    assert len(encoded) < 120
    assert '"2024-01-01..2024-02-29","2024-03-02..2024-12-31"' in encoded
    assert decode_coverage(encoded) == coverage
