"""The backend for either firmware family: pass-through on legacy, translation on 2025.

It also owns the one heavy read (`DeviceReader`): DeviceList, from whichever firmware,
always goes through it, so every consumer shares one read per refresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bridge.clock import Clock
from bridge.config import UpstreamConfig
from bridge.pvs import budget
from bridge.pvs.answer import Answer
from bridge.pvs.backend import PassThrough
from bridge.pvs.client import Upstream
from bridge.pvs.credentials import derive_password
from bridge.pvs.detect import NEW, FirmwareDetector
from bridge.pvs.devices import DeviceRead, DeviceReader
from bridge.pvs.errors import BadAnswer, UpstreamError
from bridge.pvs.requests import DL_CGI, ProxyRequest
from bridge.pvs.session import UpstreamSession
from bridge.pvs.translated import Translator

T = TypeVar("T")
TELEMETRY_ON = "/vars?set=/sys/telemetryws/enable=1"


def _same(answer: Answer) -> Answer:
    return answer


class FirmwareBackend:
    """Answers every allowed request on whichever firmware the PVS runs."""

    def __init__(
        self,
        legacy: PassThrough,
        detector: FirmwareDetector,
        translator: Translator,
        devices: DeviceReader,
        password: Callable[[], Awaitable[str]],
    ) -> None:
        self.legacy = legacy
        self.detector = detector
        self.translator = translator
        self.session = translator.session
        self.devices = devices
        self.password = password  # the PVS's password, as clients of the 2025 API log in

    async def fetch(self, request: ProxyRequest) -> Answer:
        """Answer one allowed request on whichever firmware the PVS runs."""
        if request.name == "DeviceList":
            return await self.devices.read(self._read_devices)
        if request.route.write:
            if self.detector.kind == NEW:
                why = "has no equivalent on 2025 firmware; refused"
                return self.translator.not_available(request, why)
            return await self.legacy.fetch(request)

        async def legacy(unsure: bool) -> Answer:
            return await self.legacy.upstream.fetch(
                request.target, self.legacy.send_for(request, auth_expiry=unsure)
            )

        async def on_2025() -> Answer:
            return await self.translator.answer(request, self.devices.latest)

        path_style = request.target.startswith(f"{DL_CGI}/")
        return await self._on_firmware(legacy, on_2025, _same, request.name, path_style)

    async def _read_devices(self) -> DeviceRead:
        with budget.essential():  # what every client's data comes from: past the budget too
            return await self._on_firmware(
                self.legacy.read_devices,
                self.translator.read_devices,
                lambda read: read.answer,
                "DeviceList",
                False,
            )

    async def _on_firmware(
        self,
        legacy: Callable[[bool], Awaitable[T]],
        on_2025: Callable[[], Awaitable[T]],
        answer_of: Callable[[T], Answer],
        name: str,
        path_style: bool,
    ) -> T:
        """Legacy first unless 2025 is known; a 403 to a legacy command may reveal 2025.

        While the firmware is only guessed (`unsure`), a 401/403 is the answer that tells,
        not a failure: it is counted as one only when supervisor/info says legacy.
        """
        if self.detector.kind == NEW:
            return await on_2025()
        unsure = self.detector.unsure
        try:
            found = await legacy(unsure)
        except BadAnswer as error:
            if error.answer.status != 403 or path_style or not await self.detector.forbidden():
                raise
            return await on_2025()
        answer = answer_of(found)
        if answer.status not in (401, 403) or not unsure:
            if answer.ok and not path_style:
                self.detector.legacy_answered(name)
            return found
        if not await self.detector.forbidden():
            # Not a firmware signal after all: a failing PVS, counted (and backed off
            # from) like any other failure.
            refused = BadAnswer(f"PVS answered {name} with HTTP {answer.status}", answer)
            raise self.legacy.upstream.count_failure(refused, name)
        return await on_2025()

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
        return described


@dataclass(frozen=True)
class FirmwareParts:
    """What speaks either firmware, built before the backend that dispatches between them
    (the live feed's telemetry switch needs the translator before the device reader)."""

    legacy: PassThrough
    detector: FirmwareDetector
    translator: Translator
    password: Callable[[], Awaitable[str]]

    def backend(self, devices: DeviceReader) -> FirmwareBackend:
        """The backend, reading devices through `devices`."""
        return FirmwareBackend(self.legacy, self.detector, self.translator, devices, self.password)

    async def enable_telemetry(self) -> bool:
        """Switch the PVS's WebSocket feed on (2025.10+ turns it off at every reboot).

        False when this PVS has no such switch (legacy firmware, a PVS5: 400/404), so the
        feed stops asking; an error raises (the feed retries later).
        """
        if await self.detector.detect() != NEW:
            if self.detector.unsure:  # legacy only by default (supervisor/info failed)
                raise UpstreamError("the firmware is not known yet; asking again later")
            return False
        answer = await self.translator.write_vars(TELEMETRY_ON)
        if answer.status in (400, 404):
            return False
        if not answer.ok:
            raise UpstreamError(f"the PVS answered the telemetry switch with HTTP {answer.status}")
        return True


def firmware_parts(config: UpstreamConfig, upstream: Upstream, clock: Clock) -> FirmwareParts:
    """The parts for this config: pass-through on legacy, translation on 2025 firmware."""
    legacy = PassThrough(upstream, timeout=config.timeout, slow_timeout=config.devicelist_timeout)
    detector = FirmwareDetector(upstream, clock, config.firmware, config.timeout)

    async def password() -> str:
        return config.password or derive_password(await detector.serial())

    session = UpstreamSession(
        upstream,
        clock,
        password,
        password_configured=bool(config.password),
        timeout=config.timeout,
    )
    return FirmwareParts(legacy, detector, Translator(legacy, session, clock), password)
