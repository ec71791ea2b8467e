"""Cascade's sessions. ``nox -l`` lists them; the README says which to run for what.

Version axes are named once here: ``RESOLUTIONS`` maps a lock to uv's resolution strategy, and
the test sessions differ only in the lock they install from.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "wheels"]

PYTHON = "3.11"
RAM_DISK_ROOM = 4 * 2**30  # free space a RAM disk needs before the tests write there
ROOT = Path(__file__).parent
WORKSPACE = "requirements/workspace.in"  # every package (editable, with extras) and the test tools
# lock name -> uv resolution: the latest supported versions, and the declared lower bounds
RESOLUTIONS = {"latest": "highest", "lowest": "lowest-direct"}
PACKAGES = [
    "cascade-core",
    "cascade-cli",
    "cascade-dagster",
    "plugins/cascade-github",
    "plugins/cascade-nightscout",
    "plugins/cascade-runlog",
]
TEST_PLUGINS = ["tests/plugins/cascade-testplugin", "tests/plugins/cascade-testplugin-broken"]
# What can come out differently on the lowest supported versions of dlt, pyiceberg, pandera,
# pyarrow, Dagster and Typer/Click: everything that stages, validates, merges, evolves or
# orchestrates, and the command's parsing (in process: seconds). The rest (the CLI's printing,
# redaction, the HTTP policy, how entry points load under a lock of our own) is checked once, in
# ``tests``.
DEPENDENCY_SENSITIVE = [
    "tests/unit",
    *(f"tests/integration/test_{name}.py" for name in ("runner", "fidelity", "replace", "merge", "manifests",
                                                        "evolution", "maintenance", "github", "examples",
                                                        "hook_calling")),
    "tests/cli/test_list_and_run.py",
    "tests/e2e/test_dagster.py",
    "tests/e2e/test_dagster_runs.py",
]  # fmt: skip
TYPED = ["cascade-core/src", "cascade-cli/src", "cascade-dagster/src", "plugins/cascade-github/src",
         "plugins/cascade-nightscout/src", "plugins/cascade-runlog/src"]  # fmt: skip


def lock_file(lock: str) -> str:
    return f"requirements/{lock}.txt"


def install_workspace(session: nox.Session, lock: str = "latest") -> None:
    """Every package editable, pinned by ``lock``; the test plugins as real (non-editable) packages."""
    session.install("-r", WORKSPACE, "-c", lock_file(lock))
    session.install(
        "--reinstall-package",
        "cascade-testplugin",
        "--reinstall-package",
        "cascade-testplugin-broken",
        *TEST_PLUGINS,
    )
    write_bytecode(session)


def write_bytecode(session: nox.Session) -> None:
    """Let the session's interpreters cache bytecode as they first import each module.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (CI images often set it), every interpreter the tests
    start would otherwise compile dlt, pyiceberg, pandera and Dagster from source again (``import
    dlt`` 3.9 s instead of 1.2 s here). Compiling at install instead costs 40 s a venv for modules
    no test imports.
    """
    session.env["PYTHONDONTWRITEBYTECODE"] = None


def run_suite(session: nox.Session, lock: str, *selection: str, env: dict[str, str] | None = None) -> None:
    install_workspace(session, lock)
    with scratch_folder(session) as scratch:
        _run_pytest(session, selection, {**(env or {}), **({"TMPDIR": str(scratch)} if scratch else {})})


@contextlib.contextmanager
def scratch_folder(session: nox.Session) -> Iterator[Path | None]:
    """A folder on a RAM disk for the tests' files, where the machine has one with room.

    The suite commits thousands of times (SQLite catalogs, parquet, dlt's files), and on a virtual
    disk every fsync waits: two integration modules took 54 s on /tmp and 47 s on /dev/shm here,
    for the same CPU. Removed when the tests pass; kept (and named) when they fail.
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= RAM_DISK_ROOM):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="cascade-tests-", dir=shm))
    folder.chmod(0o1777)  # as /tmp: the throwaway PostgreSQL clusters run as their own user
    try:
        yield folder
    except BaseException:
        session.log(f"the tests' temporary files are kept in {folder}")
        raise
    shutil.rmtree(folder, ignore_errors=True)


def _run_pytest(session: nox.Session, selection: tuple[str, ...], env: dict[str, str]) -> None:
    # one worker more than cores: many tests wait (on Dagster's daemons, subprocesses, deadlines), and
    # on 2 cores 3 workers took 320 s where 2 took 370 s and 4 took 343 s (each starts its own servers)
    workers = str(min(5, (os.cpu_count() or 1) + 1))
    # loadfile: a module's tests run on one worker, so a module's fixture (dagster dev, a planted
    # history) starts once. (loadgroup's xdist_group marks are ignored on pytest 9.2: xdist#1386.)
    session.run("pytest", *(session.posargs or ["-q", "-n", workers, "--dist", "loadfile", *selection]), env=env)


# Under ``nox --parallel 2`` (as CI runs) the sessions marked allow_parallel run two at a time: lint,
# typecheck and wheels use one core each (ruff, mypy, a build then one command at a time), and
# tests_lowest's workers fill what they leave. ``tests``, the longest and busiest, runs alone.
@nox.session(python=PYTHON, allow_parallel=True)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON, allow_parallel=True)
def typecheck(session: nox.Session) -> None:
    """mypy: strict on cascade-core (configured in pyproject.toml), standard on the rest."""
    install_workspace(session)
    session.install("mypy>=1.13")
    session.run("mypy", *TYPED)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite (unit, integration, end to end) on the latest supported versions (locked).

    The tests marked ``catalog_sensitive`` (they commit through the catalog: runs, replaces,
    evolution, hooks, backfills, the table commands, Dagster runs, the kill -9 points around the
    commit) run twice: on the embedded SQLite catalog and on PostgreSQL with S3-compatible storage,
    which the fixtures start on 127.0.0.1 (Debian's PostgreSQL package: run .ci/postgres first).
    """
    run_suite(session, "latest", "--catalogs", "embedded,shared")


@nox.session(python=PYTHON, allow_parallel=True)
def tests_lowest(session: nox.Session) -> None:
    """The dependency-sensitive tests on the lowest versions the packages declare (dlt, Dagster, pyiceberg, ...).

    Property tests run a quarter of their examples: ``tests`` searches for inputs, this checks the
    behaviour holds.
    """
    run_suite(session, "lowest", *DEPENDENCY_SENSITIVE, env={"CASCADE_TEST_EXAMPLE_SHARE": "0.25"})


@nox.session(python=PYTHON)
def tests_shared(session: nox.Session) -> None:
    """Only the catalog-sensitive tests, on PostgreSQL with S3-compatible storage (``tests`` runs them too).

    For work on the catalog, merge or storage code: a minute instead of the whole suite.
    """
    run_suite(session, "latest", "--catalogs", "shared", "-m", "catalog_sensitive")


@nox.session(python=PYTHON)
def lock(session: nox.Session) -> None:
    """Re-resolve requirements/latest.txt and requirements/lowest.txt from the packages' metadata."""
    session.install("uv>=0.5")
    internal = [arg for package in PACKAGES for arg in ("--no-emit-package", Path(package).name)]
    for name, resolution in RESOLUTIONS.items():
        session.run(
            "uv", "pip", "compile", WORKSPACE, "--python-version", PYTHON, "--resolution", resolution,
            "--quiet", *internal, "-o", lock_file(name),
        )  # fmt: skip


@nox.session(python=PYTHON, allow_parallel=True)
def wheels(session: nox.Session) -> None:
    """Build every sdist and wheel, install the wheels into a fresh venv outside the repo, use them.

    From a folder outside the checkout: ``cascade list`` finds the plugins' assets through their
    entry points, ``cascade_dagster.definitions`` loads, and ``cascade run`` lands a GitHub and
    a Nightscout partition from the simulators the plugin wheels ship.
    """
    session.install("uv>=0.5", "packaging>=24")
    outside = Path(tempfile.mkdtemp(prefix="cascade-wheels-"))
    dist = outside / "dist"
    for package in PACKAGES:
        session.run("uv", "build", "--quiet", "--sdist", "--wheel", "--out-dir", str(dist), package)
    session.run("python", "tests/packaging/check_dists.py", str(dist), *PACKAGES)
    venv = outside / "venv"
    session.run("uv", "venv", "--quiet", "--python", PYTHON, str(venv))
    python = str(venv / "bin" / "python")
    # the wheel files themselves (extras named on them), so no index can substitute a package
    extras = {"cascade_cli": "[query]", "cascade_dagster": "[webserver]"}
    built = [f"{wheel}{extras.get(wheel.name.split('-')[0], '')}" for wheel in sorted(dist.glob("*.whl"))]
    session.run("uv", "pip", "install", "--quiet", "--python", python, *built)
    write_bytecode(session)
    session.chdir(outside)
    session.run(python, str(ROOT / "tests/packaging/check_installed.py"), external=True)
    session.chdir(ROOT)
    shutil.rmtree(outside, ignore_errors=True)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Install Cascade with the Nightscout plugin and run ``cascade demo`` (offline)."""
    install_workspace(session)
    session.chdir(session.create_tmp())
    session.run("cascade", "demo")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """A short smoke run of every benchmark under bench/ (figures printed, no timing asserted).

    For the real figures: ``python bench/merge.py``, ``python bench/e2e.py`` and ``python bench/history.py`` (minutes),
    ``python bench/startup.py`` (seconds).
    """
    install_workspace(session)
    session.run("python", "bench/merge.py", "--smoke", "--methods", "cascade", "upsert", "append", "parquet")
    session.run("python", "bench/e2e.py", "--smoke")
    session.run("python", "bench/backfill.py", "--days", "3")
    session.run("python", "bench/history.py", "--smoke")
    session.run("python", "bench/status.py", "--days", "30", "--repeat", "1")
    session.run("python", "bench/concurrency.py", "--writers", "1", "2", "--batches", "2")  # needs .ci/postgres
    session.run("python", "bench/startup.py", "--repeat", "3")
