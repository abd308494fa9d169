"""Which firmware the PVS runs, and the backend that answers legacy requests on either.

Detection (`upstream.firmware = auto`) costs nothing on legacy firmware: requests go
through as they are, and the first good answer to a legacy command settles it. The first
401/403 makes the bridge read the unauthenticated `supervisor/info`: PVS6 from build
61840 and PVS5 from build 5408 are 2025 firmware; with no build in it, the 403 itself
decides. A 403 later on (a firmware upgrade while the bridge runs) makes it look again,
at most once per `REDETECT_AFTER`.

On 2025 firmware FirmwareBackend answers legacy clients from the new API:
DeviceList is built from `/vars` (see `translate`), Start from `supervisor/info`,
Get_Comm from `communication/interfaces`, Stop locally; commands with no equivalent get
a JSON error. Path-style endpoints that need a session get the bridge's one session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge import cjson, translate
from bridge.answer import Answer
from bridge.backend import PassThrough
from bridge.clock import Clock
from bridge.config import Config
from bridge.policy import ProxyRequest
from bridge.upstream import BadAnswer, Upstream, UpstreamError
from bridge.upstream_auth import UpstreamSession

log = logging.getLogger(__name__)

LEGACY, NEW = "legacy", "2025"
FIRST_2025_BUILD = {"PVS6": 61840, "PVS5": 5408}
REDETECT_AFTER = 600.0
OPEN_PATHS = frozenset({"supervisor/info", "communication/interfaces"})
INFO_QUERY = "/vars?match=/sys/info/&fmt=obj"
DEVICES_QUERY = "/vars?match=/sys/devices/&fmt=obj"
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
    try:
        document = json.loads(body)
    except ValueError:
        return None
    info = document.get("supervisor") if isinstance(document, dict) else None
    if not isinstance(info, dict):
        return None
    swver = str(info.get("SWVER", ""))
    build = info.get("BUILD")
    if not isinstance(build, int) or isinstance(build, bool):
        found = _BUILD.search(swver)
        build = int(found.group(1)) if found else None
    return Supervisor(str(info.get("MODEL", "")), str(info.get("SERIAL", "")), swver, build)


def firmware_of(supervisor: Supervisor) -> str | None:
    """`2025`, `legacy`, or None when the build is unknown."""
    if supervisor.build is None:
        return None
    model = "PVS5" if supervisor.model.upper().startswith("PVS5") else "PVS6"
    return NEW if supervisor.build >= FIRST_2025_BUILD[model] else LEGACY


def not_available(request: ProxyRequest, why: str, clock: Clock) -> Answer:
    """A JSON refusal (501) for a legacy request that 2025 firmware has no equivalent of."""
    body = {
        "error": "not_on_this_firmware",
        "message": f"{request.name} {why}",
        "status": 501,
        "firmware": NEW,
    }
    return Answer(
        501,
        # In the PVS's print layout, like every dl_cgi answer: line-filtering clients parse it.
        (cjson.dumps(body) + "\n").encode(),
        "application/json",
        fetched_at=clock.monotonic(),
        fetched_wall=clock.wall(),
    )


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
        self._lock = asyncio.Lock()

    async def detect(self) -> str:
        """The firmware family, probing `supervisor/info` the first time."""
        if self.kind is not None:
            return self.kind
        async with self._lock:
            if self.kind is None:
                await self._probe()
            return self.kind or LEGACY

    async def _probe(self) -> None:
        self._checked_at = self.clock.monotonic()
        try:
            answer = await self.upstream.fetch(
                "/cgi-bin/dl_cgi/supervisor/info", name="supervisor/info", timeout=self.timeout
            )
            supervisor = parse_supervisor(answer.body) if answer.ok else None
        except BadAnswer:
            supervisor = None  # an old PVS without the endpoint: legacy
        if supervisor is not None:
            self.supervisor = supervisor
        kind = firmware_of(supervisor) if supervisor else None
        self.kind = kind or LEGACY
        self.source = "supervisor/info" if kind else "default (no build in supervisor/info)"
        log.info(
            "PVS firmware: %s (%s%s)",
            self.kind,
            self.source,
            f", {supervisor.model} {supervisor.swver}" if supervisor else "",
        )

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
        async with self._lock:
            if self.kind != NEW:
                now = self.clock.monotonic()
                if self._checked_at is None or now - self._checked_at >= REDETECT_AFTER:
                    self.kind = None
                    await self._probe()  # an upgrade shows in supervisor/info
                # Only a PVS that answers supervisor/info (without a build to go by) is
                # judged by the 403 itself. When supervisor/info fails too, the PVS is
                # sick (legacy units send 403/500 bursts until a reboot), not upgraded:
                # flipping to 2025 then would stick after it recovers.
                answered_without_build = (
                    self.supervisor is not None and self.supervisor.build is None
                )
                if self.kind != NEW and answered_without_build:
                    self.kind, self.source = NEW, "first 403 to a legacy command"
                    log.info("PVS firmware: 2025 (%s)", self.source)
        return self.kind == NEW

    async def serial(self) -> str:
        """The PVS serial from `supervisor/info` (fetched once when needed)."""
        if self.supervisor is None:
            async with self._lock:
                if self.supervisor is None:
                    answer = await self.upstream.fetch(
                        "/cgi-bin/dl_cgi/supervisor/info",
                        name="supervisor/info",
                        timeout=self.timeout,
                    )
                    self.supervisor = parse_supervisor(answer.body) if answer.ok else None
        if self.supervisor is None or len(self.supervisor.serial) < 5:
            raise UpstreamError("supervisor/info gave no serial to derive the password from")
        return self.supervisor.serial

    def describe(self) -> dict[str, object]:
        """Firmware facts for /health."""
        found = self.supervisor
        return {
            "firmware": self.kind or "unknown",
            "firmware_source": self.source,
            "model": found.model if found else None,
            "build": found.build if found else None,
        }


class FirmwareBackend:
    """The Backend for both firmware families; the 2025 side speaks through one session."""

    def __init__(
        self,
        legacy: PassThrough,
        detector: FirmwareDetector,
        session: UpstreamSession,
        clock: Clock,
        *,
        reuse_for: float,
    ) -> None:
        self.legacy = legacy
        self.detector = detector
        self.session = session
        self.clock = clock
        self.reuse_for = reuse_for  # how long a translated list may answer DeviceDetails
        self._last_list: tuple[float, dict[str, Any]] | None = None
        self._list_in_flight: asyncio.Task[Answer] | None = None
        self.extra: dict[str, Callable[[], object]] = {}  # more for /health

    async def fetch(self, request: ProxyRequest) -> Answer:
        """Answer one allowed request on whichever firmware the PVS runs."""
        if self.detector.kind == NEW:
            return await self._fetch_2025(request)
        if self.detector.unsure and not request.route.write:
            # Legacy is only a guess: a 403 here is the answer that tells, not a failure.
            answer = await self.legacy.upstream.fetch(
                request.target,
                name=request.name,
                timeout=self.legacy.timeout_for(request),
                auth_expiry=True,
            )
            if answer.status not in (401, 403):
                if answer.ok and not request.target.startswith("/cgi-bin/dl_cgi/"):
                    self.detector.legacy_answered(request.name)
                return answer
            if not await self.detector.forbidden():
                # Not a firmware signal after all: a failing PVS, so the breaker counts it
                # like any other failure (and backs off) instead of letting it pass.
                error = BadAnswer(f"PVS answered {request.name} with HTTP {answer.status}", answer)
                raise self.legacy.upstream.count_failure(error, request.name)
            return await self._fetch_2025(request)
        try:
            return await self.legacy.fetch(request)
        except BadAnswer as error:
            if (
                error.answer.status != 403
                or request.route.write
                or request.target.startswith("/cgi-bin/dl_cgi/")
            ):
                raise
            if not await self.detector.forbidden():
                raise
        return await self._fetch_2025(request)

    async def _fetch_2025(self, request: ProxyRequest) -> Answer:
        name, route = request.name, request.route
        if route.write:
            return not_available(request, "has no equivalent on 2025 firmware; refused", self.clock)
        if request.target.startswith("/cgi-bin/dl_cgi/"):
            if name in OPEN_PATHS:
                return await self.legacy.fetch(request)
            return await self.session.fetch(
                request.target, name=name, timeout=self.legacy.timeout_for(request)
            )
        if name == "DeviceList":
            return await self.device_list()
        if name == "DeviceDetails":
            return await self._device_details(request)
        if name == "Start":
            info = await self._open_path("supervisor/info")
            return _json_answer(translate.start(info), self.clock)
        if name == "Stop":
            return _json_answer({"result": "succeed"}, self.clock)
        if name == "Get_Comm":
            interfaces = await self._open_path("communication/interfaces")
            return _json_answer(translate.get_comm(interfaces, self.clock.wall()), self.clock)
        return not_available(request, "has no equivalent on 2025 firmware", self.clock)

    async def _open_path(self, path: str) -> dict[str, Any]:
        answer = await self.legacy.upstream.fetch(
            f"/cgi-bin/dl_cgi/{path}", name=path, timeout=self.legacy.timeout
        )
        return _json_object(answer, path)

    async def vars_query(
        self, target: str, *, timeout: float | None = None, session: bool = True
    ) -> Answer:
        """One `/vars` query (a 400 means nothing matched), with the bridge's session
        unless `session` is False (the few variables the PVS serves before a login)."""
        timeout = timeout or self.legacy.timeout
        if not session:
            return await self.legacy.upstream.fetch(target, name="vars", timeout=timeout)
        return await self.session.fetch(target, name="vars", timeout=timeout)

    async def write_vars(self, target: str) -> Answer:
        """One `/vars?set=` write with the bridge's session: sent once, never cached."""
        return await self.session.fetch(
            target, name="vars set", timeout=self.legacy.timeout, expect_json=False, retry=False
        )

    async def device_list(self) -> Answer:
        """A legacy DeviceList built from two varserver queries, one build at a time.

        DeviceList and every DeviceDetails need it: concurrent callers share the build
        in flight instead of each sending the PVS its own pair of queries.
        """
        task = self._list_in_flight
        if task is None:
            task = asyncio.create_task(self._build_device_list(), name="translated DeviceList")
            self._list_in_flight = task
            task.add_done_callback(self._list_built)
        return await asyncio.shield(task)  # a caller that gives up does not stop the others

    def _list_built(self, task: asyncio.Task[Answer]) -> None:
        if self._list_in_flight is task:
            self._list_in_flight = None
        if not task.cancelled():
            task.exception()  # retrieved here too: nobody may be left awaiting it

    async def _build_device_list(self) -> Answer:
        info = await self.vars_query(INFO_QUERY)
        devices = await self.vars_query(DEVICES_QUERY, timeout=self.legacy.slow_timeout)
        values = {**_vars_object(info, INFO_QUERY), **_vars_object(devices, DEVICES_QUERY)}
        document = translate.device_list(values, devices.fetched_wall or self.clock.wall())
        self._last_list = (self.clock.monotonic(), document)
        return Answer(
            200,
            translate.dumps(document),
            "application/json",
            fetched_at=devices.fetched_at,
            fetched_wall=devices.fetched_wall,
            elapsed=info.elapsed + devices.elapsed,
        )

    async def _device_details(self, request: ProxyRequest) -> Answer:
        serial = dict(request.params).get("SerialNumber", "")
        last = self._last_list
        if last is None or self.clock.monotonic() - last[0] > self.reuse_for:
            await self.device_list()
            last = self._last_list
        assert last is not None
        for device in last[1]["devices"]:
            if device.get("SERIAL") == serial:
                return _json_answer({"devices": [device], "result": "succeed"}, self.clock)
        return _json_answer({"result": "error", "msg": "Device not found"}, self.clock)

    def problems(self) -> list[str]:
        """Reasons /health should show beyond the upstream's own failures."""
        return [self.session.problem] if self.session.problem else []

    async def close(self) -> None:
        """Log out of the PVS at shutdown, so a restart does not leave a session behind."""
        await self.session.logout()

    def describe(self) -> dict[str, object]:
        """Firmware, translation and session state for /health."""
        described: dict[str, object] = dict(self.detector.describe())
        if self.detector.kind == NEW:
            described["mode"] = "translate: DeviceList from /vars"
            described["session"] = self.session.describe()
        else:
            described["mode"] = "pass-through"
        described.update({key: describe() for key, describe in self.extra.items()})
        return described


def _vars_object(answer: Answer, query: str) -> dict[str, str]:
    if answer.status == 400:
        return {}  # nothing matched, e.g. no devices yet
    document = _json_object(answer, query)
    return {str(name): str(value) for name, value in document.items()}


def _json_object(answer: Answer, what: str) -> dict[str, Any]:
    """The answer's JSON object, or BadAnswer when it is an error or not an object."""
    try:
        document = json.loads(answer.body)
    except ValueError:
        document = None
    if not answer.ok or not isinstance(document, dict):
        raise BadAnswer(f"PVS answered {what} with HTTP {answer.status}", answer)
    return document


def _json_answer(document: dict[str, Any], clock: Clock, status: int = 200) -> Answer:
    """An answer the bridge made itself, stamped now (its age counts from here)."""
    return Answer(
        status,
        translate.dumps(document),
        "application/json",
        fetched_at=clock.monotonic(),
        fetched_wall=clock.wall(),
    )


def firmware_backend(config: Config, upstream: Upstream, clock: Clock) -> FirmwareBackend:
    """The backend for this config: pass-through on legacy, translation on 2025 firmware."""
    up = config["upstream"]
    legacy = PassThrough(upstream, timeout=up["timeout"], slow_timeout=up["devicelist_timeout"])
    detector = FirmwareDetector(upstream, clock, up["firmware"], up["timeout"])
    configured_password: str = up["password"]

    async def password() -> str:
        if configured_password:
            return configured_password
        return (await detector.serial())[-5:].upper()

    session = UpstreamSession(
        upstream,
        clock,
        password,
        password_source="config" if configured_password else "serial",
        timeout=up["timeout"],
    )
    return FirmwareBackend(legacy, detector, session, clock, reuse_for=config["cache"]["refresh"])
