"""Many clients, one PVS: the refresh interval and the single gate hold under load.

Time is a FakeClock moved in steps; the simulated PVS's latency is real (a second per
DeviceList, long compared with a cache hit), so every refresh is in flight while the
clients of that step are answered.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter

from bridge.clock import FakeClock
from tests.support import DEVICE_LIST, BridgeFactory, Client, SimulatorFactory, idle

CLIENTS = 50
REFRESH = 2.0
STEP = 0.25  # each client polls once per step of fake time
STEPS = 28  # 7 s: several refresh intervals


async def poll(bridge: Client, seen: Counter[str]) -> None:
    response = await bridge.get(DEVICE_LIST)
    await response.read()
    seen[f"{response.status} {response.headers.get('X-Cache')}"] += 1


async def test_fifty_clients_cause_one_devicelist_per_interval(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(latency=1.0)
    bridge = await start_bridge(sim.url, clock=clock, cache={"refresh": REFRESH})
    first = await bridge.get(DEVICE_LIST)  # the cold miss everybody waits for once
    assert first.headers["X-Cache"] == "MISS"
    seen: Counter[str] = Counter()
    for _ in range(STEPS):
        await clock.advance(STEP)  # may start a refresh: it takes the PVS a (real) second
        await asyncio.gather(*(poll(bridge, seen) for _ in range(CLIENTS)))
        await idle(bridge)
    assert sum(seen.values()) == CLIENTS * STEPS
    stats = await sim.stats()
    upstream_calls = stats["requests"]["DeviceList"]
    # One for the cold start, then at most one per interval of the time clients polled.
    assert upstream_calls <= 1 + math.ceil(STEPS * STEP / REFRESH)
    assert upstream_calls >= 2  # refresh-ahead really ran while clients polled
    assert stats["max_concurrent"] == 1
    # After the first answer, nobody waited on the PVS: every answer came from memory.
    assert set(seen) <= {"200 HIT", "200 STALE"}
    assert seen["200 HIT"] > 10 * upstream_calls
