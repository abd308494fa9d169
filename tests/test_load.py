"""Many clients, one PVS: the refresh interval and the single gate hold under load."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import DEVICE_LIST, BridgeFactory, SimulatorFactory

CLIENTS = 50
REFRESH = 2.0
RUN_FOR = 3.5 * REFRESH  # several refresh intervals
MAX_REQUESTS_PER_CLIENT = 400  # bounded in count as well as in time


async def poll(
    bridge: TestClient[web.Request, web.Application], until: float, seen: Counter[str]
) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if loop.time() >= until:
            return
        response = await bridge.get(DEVICE_LIST)
        await response.read()
        seen[f"{response.status} {response.headers.get('X-Cache')}"] += 1
        await asyncio.sleep(0.01)


async def test_fifty_clients_cause_one_devicelist_per_interval(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # The simulated PVS takes a second per DeviceList: long compared with a cache hit.
    sim = await start_simulator(latency=1.0)
    bridge = await start_bridge(sim.url, cache={"refresh": REFRESH})
    loop = asyncio.get_running_loop()
    first = await bridge.get(DEVICE_LIST)  # the cold miss everybody waits for once
    assert first.headers["X-Cache"] == "MISS"
    started = loop.time()
    seen: Counter[str] = Counter()
    await asyncio.gather(*(poll(bridge, started + RUN_FOR, seen) for _ in range(CLIENTS)))
    elapsed = loop.time() - started
    stats = await sim.stats()
    upstream_calls = stats["requests"]["DeviceList"]
    # One for the cold start, then at most one per interval of the time clients polled.
    assert upstream_calls <= 1 + math.ceil(elapsed / REFRESH)
    assert upstream_calls >= 2  # refresh-ahead really ran while clients polled
    assert stats["max_concurrent"] == 1
    # After the first answer, nobody waited on the PVS: every answer came from memory.
    assert set(seen) <= {"200 HIT", "200 STALE"}
    assert seen["200 HIT"] > 10 * upstream_calls
