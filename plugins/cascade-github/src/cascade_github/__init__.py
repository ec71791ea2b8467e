"""Cascade's GitHub plugin: the ``events`` and ``repos`` assets, and a GitHub-compatible test server."""

from cascade_github.assets import events, repos

__version__ = "0.1.0"
__all__ = ["events", "repos"]
