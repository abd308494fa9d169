"""The site model: one immutable snapshot of the PV system, from and to either PVS API.

Pure functions and frozen dataclasses (no I/O): parse a legacy DeviceList or the 2025
varserver variables once per refresh, then render whichever shape a client asks for.
"""

from __future__ import annotations

from bridge.site.legacy import parse_device_list, render_device_details, render_device_list
from bridge.site.model import Device, Kind, LiveTotals, Reading, SiteDataError, Snapshot
from bridge.site.totals import assemble, derive_totals
from bridge.site.varserver import parse_vars, render_vars

__all__ = [
    "Device",
    "Kind",
    "LiveTotals",
    "Reading",
    "SiteDataError",
    "Snapshot",
    "assemble",
    "derive_totals",
    "parse_device_list",
    "parse_vars",
    "render_device_details",
    "render_device_list",
    "render_vars",
]
