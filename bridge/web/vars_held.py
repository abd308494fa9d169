"""`/vars` answered from the device read in memory, on either firmware.

On 2025 firmware the read holds the PVS's own `/sys/info/*` and `/sys/devices/*`
variables; on legacy firmware there is no varserver at all, so every query is answered
from the device list rendered as the varserver tree (rendered once per read, see
`DeviceRead.rendered`): a name or match outside it matches nothing (400, the PVS's body),
and never becomes a PVS request. Either way an answer from memory carries the `Age` and
`X-Cache` of the device list it comes from, and leaves out the hidden variables.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from bridge.cache.answers import AnswerCache
from bridge.pvs.answer import Answer
from bridge.pvs.devices import DeviceReader
from bridge.pvs.errors import UpstreamError
from bridge.pvs.requests import DEVICE_LIST
from bridge.web.errors import json_error
from bridge.web.hidden import HiddenVars, nothing_matched
from bridge.web.replay import from_lookup, replay, upstream_error
from bridge.web.vars_query import VarsQuery, render, select


class HeldVars:
    """Answers `/vars` queries from the latest device read, as old as that read."""

    def __init__(self, devices: DeviceReader, device_cache: AnswerCache, hidden: HiddenVars):
        self.devices = devices
        self.device_cache = device_cache
        self.hidden = hidden
        # (the read's variables, those of them clients may see): filtered once per read
        self._visible: tuple[Mapping[str, str], dict[str, str]] | None = None

    def answer(self, query: VarsQuery, *, legacy: bool) -> web.Response | None:
        """The answer from memory, or None when memory holds nothing to answer with
        (no read yet, variables forgotten after a write, or the held read is not the
        device list the cache serves)."""
        latest = self.devices.latest
        if latest is None:
            return None
        raw = latest.rendered if legacy else latest.variables
        if raw is None:
            return None
        lookup = self.device_cache.from_memory(DEVICE_LIST)
        if lookup is None or lookup.answer is not latest.answer:
            return None  # the held variables are not the device list being served
        variables = self._visible_of(raw)
        names = select(query, variables)
        if not names:
            return replay(nothing_matched(), lookup.state)
        body = render(query, variables, names)
        answer = Answer(200, body, "application/json", fetched_at=lookup.answer.fetched_at)
        return from_lookup(lookup._replace(answer=answer))

    async def after_read(self, query: VarsQuery, *, legacy: bool) -> web.Response | None:
        """Wait for the one shared device read, then answer from it."""
        await self.device_cache.get(DEVICE_LIST)
        return self.answer(query, legacy=legacy)

    async def on_legacy(self, query: VarsQuery) -> web.Response:
        """Every query on legacy firmware: from the rendered device list, nothing else."""
        try:
            found = self.answer(query, legacy=True) or await self.after_read(query, legacy=True)
        except UpstreamError as error:
            return upstream_error(error)
        if found is None:
            return json_error(502, "no_device_data", "the PVS's device list holds no devices")
        return found

    async def legacy_serial(self) -> str:
        """The PVS serial from the device list (legacy: what the password derives from)."""
        snapshot = self.devices.snapshot
        if snapshot is None:
            await self.device_cache.get(DEVICE_LIST)
            snapshot = self.devices.snapshot
        supervisor = None if snapshot is None else snapshot.supervisor
        serial = "" if supervisor is None else supervisor.serial
        if len(serial) < 5:
            raise UpstreamError("the device list names no PVS serial to derive the password from")
        return serial

    def _visible_of(self, raw: Mapping[str, str]) -> dict[str, str]:
        memo = self._visible
        if memo is None or memo[0] is not raw:
            memo = self._visible = (raw, self.hidden.visible(raw))
        return memo[1]
