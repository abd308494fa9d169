"""Shared fixtures: a real simulated PVS on loopback, and bridges in front of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge import config
from bridge.app import create_app
from bridge.clock import Clock
from bridge.simulator import server as sim_server
from bridge.simulator.server import Simulator, SimulatorOptions
from bridge.web.keys import CACHE

FIXTURES = Path(__file__).parent / "fixtures"


class RunningSimulator:
    """A simulator serving on 127.0.0.1, with helpers to read its counters."""

    def __init__(self, simulator: Simulator, url: str) -> None:
        self.simulator = simulator
        self.url = url

    async def stats(self) -> dict[str, Any]:
        """GET /_sim/stats over the socket, as any client would."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/_sim/stats") as response,
        ):
            return sim_server.stats_from(await response.read())

    async def count(self, name: str) -> int:
        """How many requests for one command or path the simulator received."""
        return int((await self.stats())["requests"].get(name, 0))


SimulatorFactory = Callable[..., Awaitable[RunningSimulator]]


@pytest.fixture
async def start_simulator() -> AsyncIterator[SimulatorFactory]:
    """Start simulators on free loopback ports; all are stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start(clock: Clock | None = None, **options: Any) -> RunningSimulator:
        options.setdefault("latency", 0.0)
        simulator = sim_server.build(SimulatorOptions(**options), clock)
        runner, url = await sim_server.start(simulator, "127.0.0.1", 0)
        runners.append(runner)
        return RunningSimulator(simulator, url)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def simulator(start_simulator: SimulatorFactory) -> RunningSimulator:
    """One simulator with no latency."""
    return await start_simulator()


def bridge_config(upstream_url: str, /, **sections: dict[str, Any]) -> config.Config:
    """A test config: rate limit off, no warm-up, no log summaries, unless a test says so."""
    overrides: dict[str, dict[str, Any]] = {
        "server": {"listen": ["127.0.0.1:8080"], "summary_interval": 0.0},  # not bound
        "upstream": {"url": upstream_url, "min_interval": 0.0},
        "cache": {"warm_start": False},
        "rate_limit": {"enabled": False},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return config.load(None, environ={}, overrides=overrides)


BridgeFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def start_bridge(aiohttp_client: Any) -> BridgeFactory:
    """Start a bridge (a real aiohttp server on loopback) in front of an upstream URL."""

    async def start(
        upstream_url: str, /, *, clock: Clock | None = None, **sections: dict[str, Any]
    ) -> TestClient[web.Request, web.Application]:
        app = create_app(bridge_config(upstream_url, **sections), clock=clock)
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return start


async def wait_idle(client: TestClient[web.Request, web.Application], limit: float = 10.0) -> None:
    """Wait (bounded) until the bridge has no upstream fetch in flight."""
    cache = client.app[CACHE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while cache.fetching and loop.time() < deadline:  # noqa: ASYNC110 - bounded poll of state
        await asyncio.sleep(0.005)
    await asyncio.sleep(0)


DEVICE_LIST = "/cgi-bin/dl_cgi?Command=DeviceList"
