"""Crash points for testing crash safety: ``CASCADE_CRASH_AT=<point>`` kills the process there.

A test sets the variable for one run and checks that the table is at its previous snapshot or
at the new one, never between, and that a re-run lands exactly one clean run. Points, in order:
``mid-extract`` (after the source's first HTTP response), ``after-extract``, ``mid-stage``
(dlt has normalized, the parquet is not read yet), ``after-stage``, ``after-validate``,
``before-commit`` (data files written, catalog not yet told) and ``after-commit`` (committed,
the run not yet cleaned up).
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "CASCADE_CRASH_AT"
CRASH_POINTS = (
    "mid-extract",
    "after-extract",
    "mid-stage",
    "after-stage",
    "after-validate",
    "before-commit",
    "after-commit",
)


def crash_point(name: str) -> None:
    """Die here, as a power cut or ``kill -9`` would, when ``CASCADE_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
