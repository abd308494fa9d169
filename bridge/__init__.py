"""pvs-bridge: a caching, read-only reverse proxy for a SunPower PVS5x/PVS6."""

__version__ = "0.1.0"
