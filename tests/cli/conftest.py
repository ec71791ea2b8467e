"""In-process ``cascade`` command tests (typer's ``CliRunner``): the command as a user runs it,
without the ~10 s an interpreter per invocation costs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from cascade_cli.main import app


@dataclass(frozen=True)
class Invocation:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``cli("list", "--json")`` runs the command in ``tmp_path`` and returns its exit code, stdout and stderr."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASCADE_BLOCKED_PLUGINS", os.environ.get("CASCADE_BLOCKED_PLUGINS", "cascade-runlog"))
    runner = CliRunner()

    def invoke(*args: str) -> Invocation:
        done = runner.invoke(app, list(args), catch_exceptions=False)
        return Invocation(done.exit_code, done.stdout, done.stderr)

    yield invoke
    structlog.reset_defaults()  # the command configured logging for its process; give the next test none
