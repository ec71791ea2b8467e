"""The Dagster adapter for Cascade (placeholder: the adapter lands with its own issue)."""

__version__ = "0.1.0"
