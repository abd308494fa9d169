"""Helpers for the fault, hostile-input and shutdown tests: a simulator, a bridge, controls.

Kept out of conftest.py on purpose (other branches own it); tests use the async context
managers here instead of fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge import config
from bridge.app import create_app
from bridge.clock import Clock, FakeClock, settle
from bridge.simulator import server as sim_server
from bridge.simulator.server import Simulator, SimulatorOptions
from bridge.web.runner import make_runner
from tests.conftest import bridge_config as base_config
from tests.conftest import wait_idle

DEVICE_LIST = "/cgi-bin/dl_cgi?Command=DeviceList"
Client = TestClient[web.Request, web.Application]


@dataclass
class Sim:
    """A simulated PVS on loopback: its data URL and the side door that stays open."""

    simulator: Simulator
    url: str
    control: str
    session: aiohttp.ClientSession

    async def fault(self, mode: str, **params: Any) -> dict[str, Any]:
        """Switch the fault mode through the control endpoint, as any client would."""
        async with self.session.post(
            f"{self.control}/_sim/faults", json={"mode": mode, **params}
        ) as response:
            document: dict[str, Any] = await response.json()
            assert response.status == 200, document
            return document

    async def faults(self) -> dict[str, Any]:
        """GET /_sim/faults: mode, injected faults, overloads, reboots."""
        async with self.session.get(f"{self.control}/_sim/faults") as response:
            document: dict[str, Any] = await response.json()
            return document

    async def stats(self) -> dict[str, Any]:
        """GET /_sim/stats over the side door (it works while the PVS is `down`)."""
        async with self.session.get(f"{self.control}/_sim/stats") as response:
            return sim_server.stats_from(await response.read())

    async def calls(self, name: str = "DeviceList") -> int:
        """How many requests for `name` reached the simulated PVS."""
        return int((await self.stats())["requests"].get(name, 0))


@contextlib.asynccontextmanager
async def simulator(clock: Clock | None = None, **options: Any) -> AsyncIterator[Sim]:
    """A simulator with no latency unless asked, stopped afterwards."""
    options.setdefault("latency", 0.0)
    sim = sim_server.build(SimulatorOptions(**options), clock)
    runner, url = await sim_server.start(sim, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield Sim(sim, url, sim.control_url, session)
    finally:
        await runner.cleanup()


FAULT_DEFAULTS: dict[str, dict[str, Any]] = {
    "upstream": {
        "timeout": 1.0,
        "devicelist_timeout": 1.0,
        "backoff_initial": 2.0,
        "backoff_max": 16.0,
        "breaker_threshold": 3,
    },
    "cache": {"refresh": 10.0, "max_stale": 60.0},
}


def bridge_config(upstream_url: str, /, **sections: dict[str, Any]) -> config.Config:
    """The shared test config with fast timeouts, short backoff and short staleness."""
    merged = {name: dict(values) for name, values in FAULT_DEFAULTS.items()}
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    return base_config(upstream_url, **merged)


@contextlib.asynccontextmanager
async def bridge(
    upstream_url: str, /, *, clock: Clock | None = None, **sections: dict[str, Any]
) -> AsyncIterator[Client]:
    """A bridge on loopback in front of `upstream_url`; jitter fixed so delays are exact."""
    app = create_app(
        bridge_config(upstream_url, **sections), clock=clock or FakeClock(), jitter=lambda: 1.0
    )
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def idle(client: Client, limit: float = 10.0) -> None:
    """Wait (bounded, real time) until the bridge has no upstream fetch in flight."""
    await wait_idle(client, limit)
    await settle()


async def advance(clock: FakeClock, client: Client, seconds: float) -> None:
    """Move fake time and let whatever that starts upstream finish."""
    await clock.advance(seconds)
    await idle(client)


async def health(client: Client) -> tuple[int, dict[str, Any]]:
    """(HTTP status, /health document)."""
    response = await client.get("/health")
    document: dict[str, Any] = await response.json()
    return response.status, document


@dataclass
class Served:
    """A bridge served exactly as `pvs-bridge serve` serves it (BridgeRunner), on loopback."""

    app: web.Application
    port: int

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def served_bridge(
    upstream_url: str, /, *, clock: Clock | None = None, **sections: dict[str, Any]
) -> AsyncIterator[Served]:
    """The production runner (hardened parser, JSON parser errors) on a free port."""
    cfg = bridge_config(upstream_url, **sections)
    app = create_app(cfg, clock=clock or FakeClock())
    runner = make_runner(app, cfg.server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    try:
        yield Served(app, int(sockets[0].getsockname()[1]))
    finally:
        await runner.cleanup()


@dataclass
class RawAnswer:
    """An HTTP answer read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def parse_raw(data: bytes) -> RawAnswer | None:
    """Parse the first HTTP answer in `data` (None if there is none)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return RawAnswer(status, headers, rest[:length])


async def raw_request(port: int, data: bytes, limit: float = 5.0) -> RawAnswer | None:
    """Send raw bytes to 127.0.0.1:port and read the answer (the bridge closes after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            answer = parse_raw(received)
            if answer is not None and len(answer.body) == int(
                answer.headers.get("content-length", -1)
            ):
                return answer
        return parse_raw(received)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
