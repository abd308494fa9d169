"""Which firmware the PVS runs: legacy `dl_cgi`, or 2025 (login + varserver).

Detection (`upstream.firmware = auto`) costs nothing on legacy firmware: requests go
through as they are, and the first good answer to a legacy command settles it. The first
401/403 makes the bridge read the unauthenticated `supervisor/info`: PVS6 from build
61840 and PVS5 from build 5408 are 2025 firmware; with no build in it, the 403 itself
decides. A 403 later on (a firmware upgrade while the bridge runs) makes it look again,
at most once per `REDETECT_AFTER`. The detector always reads the PVS itself, so it sees
the true build; `advertise_2025_build` is what clients may be told instead (see there).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from bridge import cjson
from bridge.clock import Clock
from bridge.flight import SingleFlight
from bridge.pvs.client import Send, Upstream
from bridge.pvs.errors import BadAnswer, UpstreamError

log = logging.getLogger(__name__)

LEGACY, NEW = "legacy", "2025"
FIRST_2025_BUILD = {"PVS6": 61840, "PVS5": 5408}
REDETECT_AFTER = 600.0
SUPERVISOR_INFO = "/cgi-bin/dl_cgi/supervisor/info"
_BUILD = re.compile(r"Build\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Supervisor:
    """What `supervisor/info` says about the PVS."""

    model: str
    serial: str
    swver: str
    build: int | None


def parse_supervisor(body: bytes) -> Supervisor | None:
    """The supervisor fields of a `supervisor/info` answer (None when it has none)."""
    document = _json_object(body)
    info = document.get("supervisor") if document is not None else None
    return _supervisor(info) if isinstance(info, dict) else None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _supervisor(info: dict[str, Any]) -> Supervisor:
    swver = str(info.get("SWVER", ""))
    build = info.get("BUILD")
    if not isinstance(build, int) or isinstance(build, bool):
        found = _BUILD.search(swver)
        build = int(found.group(1)) if found else None
    return Supervisor(str(info.get("MODEL", "")), str(info.get("SERIAL", "")), swver, build)


def _model(supervisor: Supervisor) -> str:
    """PVS5 or PVS6 (what is not a PVS5 counts its builds as a PVS6 does)."""
    return "PVS5" if supervisor.model.upper().startswith("PVS5") else "PVS6"


def first_2025_build(supervisor: Supervisor) -> int:
    """The first build of 2025 firmware for this model (a PVS5's builds count apart)."""
    return FIRST_2025_BUILD[_model(supervisor)]


def firmware_of(supervisor: Supervisor) -> str | None:
    """`2025`, `legacy`, or None when the build is unknown."""
    if supervisor.build is None:
        return None
    return NEW if supervisor.build >= first_2025_build(supervisor) else LEGACY


@dataclass(frozen=True)
class Advertised:
    """A `supervisor/info` body that says a 2025-level build, and the PVS's true build."""

    body: bytes
    true_build: int
    said_build: int


@functools.lru_cache(maxsize=8)
def advertise_2025_build(body: bytes) -> Advertised | None:
    """A legacy PVS's `supervisor/info` body saying the first 2025 build; None to keep it.

    Clients such as Enhanced SunPower choose the 2025 API only when this answer says a
    2025-level build (docs/pvs-api.md section 7), and the bridge serves that API in front of a
    legacy PVS too. So every place the body states its build says the first 2025 one:
    BUILD (added on a PVS6 that has none) and the "Build N" in SWVER (where a PVS5 keeps
    it). Every other field stays, in the PVS's print layout (`cjson`). A body with no
    build to go by, or already at a 2025 build (2025 firmware), is kept as it is. Pure
    and memoised: the cache keeps the PVS's bytes, the firmware detector reads the PVS.
    """
    document = _json_object(body)
    info = document.get("supervisor") if document is not None else None
    if document is None or not isinstance(info, dict):
        return None
    supervisor = _supervisor(info)
    first = first_2025_build(supervisor)
    if supervisor.build is None or supervisor.build >= first:
        return None
    said = dict(info)
    if isinstance(info.get("SWVER"), str):
        said["SWVER"] = _BUILD.sub(lambda found: _said(found, first), info["SWVER"])
    if "BUILD" in info or _model(supervisor) == "PVS6":
        said["BUILD"] = first
    rewritten = cjson.dumps({**document, "supervisor": said}).encode()
    return Advertised(rewritten, supervisor.build, first)


def _said(found: re.Match[str], build: int) -> str:
    """A "Build N" found in SWVER, its number replaced (the words kept as the PVS wrote them)."""
    return found[0][: found.start(1) - found.start()] + str(build)


class FirmwareDetector:
    """Finds and remembers the firmware family; configured values skip the probe."""

    def __init__(self, upstream: Upstream, clock: Clock, configured: str, timeout: float) -> None:
        self.upstream = upstream
        self.clock = clock
        self.configured = configured
        self.timeout = timeout
        self.kind: str | None = None if configured == "auto" else configured
        self.source = "config" if configured != "auto" else "not yet"
        self.supervisor: Supervisor | None = None
        self._checked_at: float | None = None
        self._flight: SingleFlight[str, None] = SingleFlight()

    async def detect(self) -> str:
        """The firmware family, probing `supervisor/info` the first time."""
        if self.kind is None:
            await self._flight.run("probe", self._probe)
        return self.kind or LEGACY

    async def _read_supervisor(self) -> Supervisor | None:
        try:
            answer = await self.upstream.fetch(
                SUPERVISOR_INFO, Send("supervisor/info", self.timeout)
            )
        except BadAnswer:
            return None  # an old PVS without the endpoint: legacy
        return parse_supervisor(answer.body) if answer.ok else None

    async def _probe(self) -> None:
        self._checked_at = self.clock.monotonic()
        supervisor = await self._read_supervisor()
        if supervisor is not None:
            self.supervisor = supervisor
        kind = firmware_of(supervisor) if supervisor else None
        self.kind = kind or LEGACY
        self.source = "supervisor/info" if kind else "default (no build in supervisor/info)"
        shown = f", {supervisor.model} {supervisor.swver}" if supervisor else ""
        log.info("PVS firmware: %s (%s%s)", self.kind, self.source, shown)

    @property
    def unsure(self) -> bool:
        """Not detected yet, or legacy only by default because supervisor/info had no build."""
        known_build = self.supervisor is not None and self.supervisor.build is not None
        if self.configured != "auto":
            return False
        return self.kind is None or (self.kind == LEGACY and not known_build)

    def legacy_answered(self, name: str) -> None:
        """A legacy command got a good answer: only legacy firmware does that."""
        if self.configured == "auto" and self.kind is None:
            self.kind, self.source = LEGACY, f"{name} answered"
            log.info("PVS firmware: legacy (%s)", self.source)

    async def forbidden(self) -> bool:
        """A legacy command got 403: whether the PVS now looks like 2025 firmware."""
        if self.configured != "auto" or self.kind == NEW:
            return self.kind == NEW
        await self._flight.run("recheck", self._recheck)
        return self.kind == NEW

    async def _recheck(self) -> None:
        now = self.clock.monotonic()
        if self._checked_at is None or now - self._checked_at >= REDETECT_AFTER:
            self.kind = None
            await self._probe()  # an upgrade shows in supervisor/info
        # Only a PVS that answers supervisor/info (without a build to go by) is judged
        # by the 403 itself. When supervisor/info fails too, the PVS is sick (legacy
        # units send 403/500 bursts until a reboot), not upgraded: flipping to 2025
        # then would stick after it recovers.
        answered_without_build = self.supervisor is not None and self.supervisor.build is None
        if self.kind != NEW and answered_without_build:
            self.kind, self.source = NEW, "first 403 to a legacy command"
            log.info("PVS firmware: 2025 (%s)", self.source)

    async def serial(self) -> str:
        """The PVS serial from `supervisor/info` (fetched once when needed)."""
        if self.supervisor is None:
            await self._flight.run("serial", self._fetch_serial)
        if self.supervisor is None or len(self.supervisor.serial) < 5:
            raise UpstreamError("supervisor/info gave no serial to derive the password from")
        return self.supervisor.serial

    async def _fetch_serial(self) -> None:
        if self.supervisor is None:
            answer = await self.upstream.fetch(
                SUPERVISOR_INFO, Send("supervisor/info", self.timeout)
            )
            self.supervisor = parse_supervisor(answer.body) if answer.ok else None

    def describe(self) -> dict[str, object]:
        """Firmware facts for /health."""
        found = self.supervisor
        return {
            "firmware": self.kind or "unknown",
            "firmware_source": self.source,
            "model": found.model if found else None,
            "build": found.build if found else None,
        }
