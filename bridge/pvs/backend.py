"""How an allowed request is answered from the PVS: the seam between cache and upstream.

The cache asks a Backend for an Answer to a ProxyRequest; the backend knows which
upstream call produces it and how long that call may take. Legacy firmware is a
straight pass-through of the canonical target.
"""

from __future__ import annotations

from typing import Protocol

from bridge.pvs.answer import Answer
from bridge.pvs.client import Send, Upstream
from bridge.pvs.devices import DeviceRead, legacy_snapshot
from bridge.pvs.requests import DEVICE_LIST, ProxyRequest


class Backend(Protocol):
    """Produces the answer to one allowed request, through the upstream gate."""

    async def fetch(self, request: ProxyRequest) -> Answer:
        """Fetch the answer (raises UpstreamError on failure)."""
        ...

    def describe(self) -> dict[str, object]:
        """What /health shows about the backend."""
        ...

    def problems(self) -> list[str]:
        """Reasons, in words, why the backend cannot fully serve (e.g. a refused login)."""
        ...

    async def close(self) -> None:
        """Release what the backend holds on the PVS (called once, at shutdown)."""
        ...


class PassThrough:
    """Legacy firmware: send the canonical target as it is and keep the PVS's answer."""

    def __init__(self, upstream: Upstream, *, timeout: float, slow_timeout: float) -> None:
        self.upstream = upstream
        self.timeout = timeout
        self.slow_timeout = slow_timeout

    def send_for(self, request: ProxyRequest, *, auth_expiry: bool = False) -> Send:
        """How `request` goes out: DeviceList may take minutes on a busy PVS."""
        timeout = self.slow_timeout if request.route.slow else self.timeout
        return Send(
            request.name,
            timeout,
            expect_json=not request.route.write,
            auth_expiry=auth_expiry,
        )

    async def fetch(self, request: ProxyRequest) -> Answer:
        """One upstream GET of the canonical target."""
        return await self.upstream.fetch(request.target, self.send_for(request))

    async def read_devices(self, unsure: bool = False) -> DeviceRead:
        """The legacy device read: DeviceList's exact bytes and their snapshot.

        With `unsure` (firmware not known yet) a 401/403 comes back as an answer.
        """
        send = self.send_for(DEVICE_LIST, auth_expiry=unsure)
        answer = await self.upstream.fetch(DEVICE_LIST.target, send)
        return DeviceRead(answer, legacy_snapshot(answer) if answer.ok else None)

    def describe(self) -> dict[str, object]:
        """Legacy pass-through has nothing more to say."""
        return {"firmware": "legacy", "mode": "pass-through"}

    def problems(self) -> list[str]:
        """A pass-through has no problems of its own: the backoff reports the PVS's."""
        return []

    async def close(self) -> None:
        """A pass-through holds nothing on the PVS."""
