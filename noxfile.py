"""Cascade's sessions. ``nox -l`` lists them; the README says which to run for what."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"
PACKAGES = [
    "cascade-core",
    "cascade-cli[demo,query]",
    "cascade-dagster[webserver]",
    "plugins/cascade-github",
    "plugins/cascade-nightscout",
    "plugins/cascade-runlog",
]
TEST_PLUGINS = ["tests/plugins/cascade-testplugin", "tests/plugins/cascade-testplugin-broken"]
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3"]


def install_workspace(session: nox.Session) -> None:
    """Editable installs of every package, and the test plugins as real (non-editable) packages."""
    editable: list[str] = []
    for package in PACKAGES:
        editable += ["-e", package]
    session.install(*editable, *TEST_DEPS)
    session.install(
        "--reinstall-package", "cascade-testplugin", "--reinstall-package", "cascade-testplugin-broken", *TEST_PLUGINS
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, integration (real catalog, dlt, HTTP servers), end to end."""
    install_workspace(session)
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Install Cascade with the Nightscout plugin and run ``cascade demo`` (offline)."""
    install_workspace(session)
    session.chdir(session.create_tmp())
    session.run("cascade", "demo")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """A short smoke run of every benchmark under bench/ (figures printed, no timing asserted).

    For the real figures: ``python bench/merge.py`` and ``python bench/e2e.py`` (minutes).
    """
    install_workspace(session)
    session.run("python", "bench/merge.py", "--smoke", "--methods", "cascade", "upsert", "append", "parquet")
    session.run("python", "bench/e2e.py", "--smoke")
    session.run("python", "bench/backfill.py", "--days", "3")
