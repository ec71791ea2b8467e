"""Cascade's run history: one row per run in ``cascade.runs``."""

__version__ = "0.1.0"
