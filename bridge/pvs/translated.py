"""Legacy answers on 2025 firmware, built from the new API for clients that know the old one.

DeviceList comes from the site snapshot of two varserver queries (the one heavy read),
DeviceDetails from the same snapshot (no PVS request), Start from `supervisor/info`,
Get_Comm from `communication/interfaces`, Stop locally; commands with no equivalent get
a 501 in the PVS's print layout. Path-style endpoints that need a session get the
bridge's one session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bridge import cjson
from bridge.clock import Clock
from bridge.pvs.answer import Answer
from bridge.pvs.backend import PassThrough
from bridge.pvs.client import Send
from bridge.pvs.detect import NEW
from bridge.pvs.devices import DeviceRead
from bridge.pvs.errors import BadAnswer
from bridge.pvs.requests import DL_CGI, ProxyRequest
from bridge.pvs.session import UpstreamSession
from bridge.site.legacy import render_device_details, render_device_list
from bridge.site.varserver import parse_vars

OPEN_PATHS = frozenset({"supervisor/info", "communication/interfaces"})
INFO_QUERY = "/vars?match=/sys/info/&fmt=obj"
DEVICES_QUERY = "/vars?match=/sys/devices/&fmt=obj"


class Translator:
    """Answers legacy requests from a PVS on 2025 firmware."""

    def __init__(self, legacy: PassThrough, session: UpstreamSession, clock: Clock) -> None:
        self.legacy = legacy
        self.session = session
        self.clock = clock

    async def vars_query(
        self, target: str, *, timeout: float | None = None, session: bool = True
    ) -> Answer:
        """One `/vars` query (a 400 means nothing matched), with the bridge's session
        unless `session` is False (the few variables the PVS serves before a login)."""
        send = Send("vars", timeout or self.legacy.timeout)
        if not session:
            return await self.legacy.upstream.fetch(target, send)
        return await self.session.fetch(target, send)

    async def write_vars(self, target: str) -> Answer:
        """One `/vars?set=` write with the bridge's session: sent once, never cached."""
        send = Send("vars set", self.legacy.timeout, expect_json=False)
        return await self.session.fetch(target, send, retry=False)

    async def read_devices(self) -> DeviceRead:
        """The 2025 device read: two varserver queries, one snapshot, DeviceList bytes."""
        info = await self.vars_query(INFO_QUERY)
        devices = await self.vars_query(DEVICES_QUERY, timeout=self.legacy.slow_timeout)
        values = {**vars_object(info, INFO_QUERY), **vars_object(devices, DEVICES_QUERY)}
        wall = devices.fetched_wall or self.clock.wall()
        snapshot = parse_vars(values, wall)
        answer = Answer(
            200,
            cjson.dumps(render_device_list(snapshot)).encode(),
            "application/json",
            fetched_at=devices.fetched_at,
            fetched_wall=devices.fetched_wall,
            elapsed=info.elapsed + devices.elapsed,
        )
        return DeviceRead(answer, snapshot, values)

    async def answer(self, request: ProxyRequest, read: DeviceRead | None) -> Answer:
        """Any allowed read but DeviceList, as a legacy client expects it."""
        name = request.name
        if request.target.startswith(f"{DL_CGI}/"):
            if name in OPEN_PATHS:
                return await self.legacy.fetch(request)
            return await self.session.fetch(request.target, self.legacy.send_for(request))
        if name == "DeviceDetails":
            return self.device_details(request, read)
        if name == "Start":
            info = await self._open_path("supervisor/info")
            return self._made(start(info))
        if name == "Stop":
            return self._made({"result": "succeed"})
        if name == "Get_Comm":
            interfaces = await self._open_path("communication/interfaces")
            return self._made(get_comm(interfaces, self.clock.wall()))
        return self.not_available(request, "has no equivalent on 2025 firmware")

    def device_details(self, request: ProxyRequest, read: DeviceRead | None) -> Answer:
        """DeviceDetails from the latest device read, as old as that read."""
        serial = dict(request.params).get("SerialNumber", "")
        snapshot = read.snapshot if read is not None else None
        found = render_device_details(snapshot, serial) if snapshot is not None else None
        answer = self._made(found or {"result": "error", "msg": "Device not found"})
        if read is None:
            return answer
        source = read.answer
        return replace(answer, fetched_at=source.fetched_at, fetched_wall=source.fetched_wall)

    def not_available(self, request: ProxyRequest, why: str) -> Answer:
        """A 501 for a legacy request that 2025 firmware has no equivalent of."""
        body = {
            "error": "not_on_this_firmware",
            "message": f"{request.name} {why}",
            "status": 501,
            "firmware": NEW,
        }
        return self._made(body, status=501)

    async def _open_path(self, path: str) -> dict[str, Any]:
        answer = await self.legacy.upstream.fetch(
            f"{DL_CGI}/{path}", Send(path, self.legacy.timeout)
        )
        return json_object(answer, path)

    def _made(self, document: Mapping[str, Any], status: int = 200) -> Answer:
        """An answer the bridge made itself, stamped now, in the PVS's print layout."""
        return Answer(
            status,
            cjson.dumps(dict(document)).encode(),
            "application/json",
            fetched_at=self.clock.monotonic(),
            fetched_wall=self.clock.wall(),
        )


def start(supervisor_info: Mapping[str, Any]) -> dict[str, Any]:
    """Command=Start from `supervisor/info`: the same supervisor fields the legacy answer had."""
    supervisor = supervisor_info.get("supervisor")
    if not isinstance(supervisor, dict):
        supervisor = {}
    keys = ("FWVER", "MODEL", "SERIAL", "SWVER")
    return {"result": "succeed", "supervisor": {k: supervisor[k] for k in keys if k in supervisor}}


def get_comm(interfaces: Mapping[str, Any], wall: float) -> dict[str, Any]:
    """Command=Get_Comm from `communication/interfaces`."""
    listed = interfaces.get("interfaces")
    items = listed if isinstance(listed, list) else []
    up = [item for item in items if isinstance(item, dict) and item.get("internet") == "up"]
    system = {
        "interface": up[0].get("interface", "") if up else "",
        "internet": "up" if up else "down",
        "sms": up[0].get("sms", "unreachable") if up else "unreachable",
    }
    return {
        "networkstatus": {"interfaces": items, "system": system, "ts": str(int(wall))},
        "result": "succeed",
    }


def vars_object(answer: Answer, query: str) -> dict[str, str]:
    """A `/vars?fmt=obj` answer's variables ({} when nothing matched)."""
    if answer.status == 400:
        return {}  # nothing matched, e.g. no devices yet
    document = json_object(answer, query)
    return {str(name): str(value) for name, value in document.items()}


def json_object(answer: Answer, what: str) -> dict[str, Any]:
    """The answer's JSON object, or BadAnswer when it is an error or not an object."""
    try:
        document = json.loads(answer.body)
    except (ValueError, RecursionError):
        document = None
    if not answer.ok or not isinstance(document, dict):
        raise BadAnswer(f"PVS answered {what} with HTTP {answer.status}", answer)
    return document
