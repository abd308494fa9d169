"""What the bridge may ask the PVS: the allowed commands and paths, in canonical form.

A `ProxyRequest` is an allowed request whose `target` is both the cache key and exactly
what goes upstream (built by the web layer's policy from a client's request, or by the
bridge itself). `DeviceList` and its path-style twin `devices/list` are one request: the
heavy device read happens once per refresh whichever a client polls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

DL_CGI = "/cgi-bin/dl_cgi"


class CacheClass(Enum):
    """How long an answer stays fresh; REFRESH answers are also refreshed ahead."""

    REFRESH = "refresh"  # the device list
    CONSTANT = "constant"  # constant per PVS boot
    STATUS = "status"  # changes, but slowly
    NEVER = "never"  # writes


@dataclass(frozen=True)
class Param:
    """A parameter a command takes, with the shape its value must have."""

    name: str
    pattern: re.Pattern[str]
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Route:
    """One allowed command or path, with how to cache it and how long the PVS may take."""

    name: str
    cache: CacheClass
    params: tuple[Param, ...] = ()
    slow: bool = False
    write: bool = False


@dataclass(frozen=True)
class ProxyRequest:
    """An allowed request in canonical form: `target` is the cache key and what goes upstream."""

    route: Route
    target: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The command or path name, as /_sim/stats and /health count it."""
        return self.route.name


SERIAL = Param(
    "SerialNumber", re.compile(r"[A-Za-z0-9_-]{1,40}"), True, "a device serial (A-Z, 0-9, _ -)"
)
FW_TYPE = Param("type", re.compile(r"residential|commercial"), False, "residential or commercial")

READ_COMMANDS: dict[str, Route] = {
    route.name: route
    for route in (
        Route("DeviceList", CacheClass.REFRESH, slow=True),
        Route("Start", CacheClass.CONSTANT),
        Route("Stop", CacheClass.CONSTANT),
        Route("Get_Comm", CacheClass.STATUS),
        Route("CheckFW", CacheClass.CONSTANT, (FW_TYPE,)),
        Route("DeviceDetails", CacheClass.STATUS, (SERIAL,)),
        Route("GridProfileGet", CacheClass.STATUS),
        Route("GetDiscoveryProgress", CacheClass.STATUS),
        Route("GetCellPurchased", CacheClass.STATUS),
    )
}

# The one heavy read, whichever form a client asks for it in.
DEVICE_LIST = ProxyRequest(READ_COMMANDS["DeviceList"], f"{DL_CGI}?Command=DeviceList")

READ_PATHS: dict[str, Route] = {
    route.name: route
    for route in (
        Route("supervisor/info", CacheClass.CONSTANT),
        Route("communication/interfaces", CacheClass.STATUS),
        Route("energy-storage-system/status", CacheClass.STATUS),
        Route("network/interfaces", CacheClass.STATUS),
        Route("network/powerProduction", CacheClass.STATUS),
    )
}
# Path-style names answered by another request: `devices/list` is the DeviceList.
PATH_ALIASES: dict[str, ProxyRequest] = {"devices/list": DEVICE_LIST}
