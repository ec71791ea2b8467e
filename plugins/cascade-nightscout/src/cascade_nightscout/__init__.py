"""Cascade's Nightscout plugin: the ``glucose`` asset, and a Nightscout-compatible test server."""

from cascade_nightscout.glucose import glucose

__version__ = "0.1.0"
__all__ = ["glucose"]
