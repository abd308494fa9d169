"""Refresh-ahead that gets ahead: with one read per interval, answers stay HIT while each
refresh lands on schedule, and turn STALE (saying so) only when refreshes run late.

The simulated PVS's latency runs on the same FakeClock as the bridge, so a minute of a
slow PVS plays out exactly, in counts and orderings, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import ClientResponse

from bridge.clock import FakeClock
from tests.support import DEVICE_LIST, GET_COMM, BridgeFactory, Client, SimulatorFactory

CLIENTS = 50
STEP = 0.25


async def poll(
    bridge: Client, clock: FakeClock, seconds: float, seen: Counter[str], warned: list[bool]
) -> None:
    """CLIENTS clients asking every STEP fake seconds for `seconds`; count X-Cache.

    The fake time moved while waiting for answers counts against the next step: on a
    loaded machine answers from memory take longer in real time, and the clock must not
    creep past the schedule because of it (the read counts depend on fake time only).
    """
    start = clock.monotonic()
    for step in range(round(seconds / STEP)):
        asked = [asyncio.create_task(bridge.get(DEVICE_LIST)) for _ in range(CLIENTS)]
        await asyncio.sleep(0.01)  # real sockets: answers from memory arrive at once
        while not all(task.done() for task in asked):  # a MISS waits on the PVS's fake time
            await clock.advance(0.05)
            await asyncio.sleep(0.005)
        for task in asked:
            answer: ClientResponse = task.result()
            assert answer.status == 200
            seen[answer.headers["X-Cache"]] += 1
            if answer.headers["X-Cache"] == "STALE":
                warned.append("110" in answer.headers.get("Warning", ""))
        behind = start + (step + 1) * STEP - clock.monotonic()
        if behind > 0:
            await clock.advance(behind)
        await asyncio.sleep(0.002)


async def test_a_pvs_that_answers_on_schedule_gives_hits_and_a_late_one_stale(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    simulator = await start_simulator(clock, latency=1.5, latency_on_clock=True)
    bridge = await start_bridge(simulator.url, clock=clock, cache={"refresh": 3.0})
    seen: Counter[str] = Counter()
    warned: list[bool] = []
    await poll(bridge, clock, 15.0, seen, warned)
    served = sum(seen.values())
    assert served == CLIENTS * round(15.0 / STEP)
    assert seen["HIT"] >= 0.95 * served, seen
    stats = await simulator.stats()
    reads = stats["requests"]["DeviceList"]
    assert reads <= 1 + 15.0 / 3.0
    assert stats["min_gap_s"] >= 3.0  # start to start, at most one read per interval

    # The PVS slows to 10 s per DeviceList: refreshes land late, and answers say so.
    simulator.simulator.options.latency = 10.0
    late: Counter[str] = Counter()
    await poll(bridge, clock, 30.0, late, warned)
    assert late["STALE"] > 0, late
    assert warned and all(warned)
    health = await (await bridge.get("/health")).json()
    (entry,) = [row for row in health["cache"]["entries"] if row["name"] == "DeviceList"]
    assert entry["ttl_s"] == 3.0
    assert entry["refresh_time_s"] >= 10.0  # learned
    assert entry["last_refresh_on_time"] is False
    assert (await simulator.stats())["min_gap_s"] >= 3.0


async def test_a_failing_refresh_is_stale_at_once_to_clients_and_to_health(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    # Get_Comm takes a tenth of the latency: 1 s, so the refresh time learned is 1.5 s.
    simulator = await start_simulator(clock, latency=10.0, latency_on_clock=True)
    bridge = await start_bridge(
        simulator.url, clock=clock, cache={"ttl_status": 10.0}, upstream={"backoff_initial": 30.0}
    )
    asked = asyncio.create_task(bridge.get(GET_COMM))
    while not asked.done():  # the PVS's second, on the fake clock
        await clock.advance(0.05)
        await asyncio.sleep(0.005)
    assert (await asked).status == 200
    await simulator.fault("error500")
    await clock.advance(9.3)  # past the interval (age ~10.3), inside the learned 1.5 s
    first = await bridge.get(GET_COMM)  # on schedule so far: its refresh starts now
    assert first.headers["X-Cache"] == "HIT"
    await asyncio.sleep(0.05)  # the refresh fails: the backoff now holds attempts
    await clock.advance(0.01)
    after = await bridge.get(GET_COMM)
    assert after.headers["X-Cache"] == "STALE"
    health = await (await bridge.get("/health")).json()
    (entry,) = [row for row in health["cache"]["entries"] if row["name"] == "Get_Comm"]
    assert entry["state"] == "stale"
