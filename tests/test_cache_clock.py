"""Cache timing with a fake clock: Age, expiry, stale-while-revalidate, refresh-ahead, idling."""

from __future__ import annotations

import asyncio

from bridge.clock import FakeClock
from tests.support import (
    DEVICE_LIST,
    GET_COMM,
    BridgeFactory,
    Sim,
    SimulatorFactory,
    advance,
    idle,
)


async def test_age_is_true_and_max_age_counts_down(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    bridge = await start_bridge(simulator.url, clock=clock, cache={"refresh": 60.0})
    first = await bridge.get(DEVICE_LIST)
    assert (first.headers["X-Cache"], first.headers["Age"]) == ("MISS", "0")
    await clock.advance(7.0)
    later = await bridge.get(DEVICE_LIST)
    assert later.headers["X-Cache"] == "HIT"
    assert later.headers["Age"] == "7"
    assert later.headers["Cache-Control"] == "max-age=53"


async def test_age_counts_from_when_the_pvs_was_asked(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # A DeviceList that took over a second to come is over a second old when it arrives.
    sim = await start_simulator(latency=1.2)
    bridge = await start_bridge(sim.url, cache={"refresh": 60.0})
    first = await bridge.get(DEVICE_LIST)
    assert first.headers["X-Cache"] == "MISS"
    assert int(first.headers["Age"]) >= 1
    assert int(first.headers["Cache-Control"].removeprefix("max-age=")) <= 59


async def test_expired_entry_is_served_stale_at_once_and_refreshed_behind(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    bridge = await start_bridge(simulator.url, clock=clock, cache={"ttl_status": 30.0})
    body = await (await bridge.get(GET_COMM)).read()
    await clock.advance(31.0)
    stale = await bridge.get(GET_COMM)
    assert stale.headers["X-Cache"] == "STALE"
    assert stale.headers["Age"] == "31"
    assert stale.headers["Cache-Control"] == "max-age=0"
    assert "110" in stale.headers["Warning"]
    assert await stale.read() == body
    await idle(bridge)
    fresh = await bridge.get(GET_COMM)
    assert (fresh.headers["X-Cache"], fresh.headers["Age"]) == ("HIT", "0")
    assert await simulator.count("Get_Comm") == 2


async def test_data_older_than_max_stale_is_never_served(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    bridge = await start_bridge(
        simulator.url, clock=clock, cache={"ttl_status": 30.0, "max_stale": 60.0}
    )
    await bridge.get(GET_COMM)
    await clock.advance(61.0)
    again = await bridge.get(GET_COMM)
    assert again.headers["X-Cache"] == "MISS"  # waited for new data instead
    assert again.headers["Age"] == "0"


async def test_refresh_ahead_keeps_devicelist_fresh_while_polled_then_stops(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    refresh, idle_after = 10.0, 30.0
    bridge = await start_bridge(
        simulator.url, clock=clock, cache={"refresh": refresh, "idle_after": idle_after}
    )
    await bridge.get(DEVICE_LIST)
    states = []
    for _ in range(10):  # a client polling every 5 s for 50 s
        await advance(clock, bridge, 5.0, step=1.0)
        states.append((await bridge.get(DEVICE_LIST)).headers["X-Cache"])
    assert set(states) == {"HIT"}  # never waited, never stale
    polled_calls = await simulator.count("DeviceList")
    assert 50 / refresh <= polled_calls <= 1 + 50 / refresh
    await advance(clock, bridge, idle_after + 5 * refresh, step=1.0)  # clients went quiet
    quiet_calls = await simulator.count("DeviceList")
    assert quiet_calls - polled_calls <= idle_after / refresh + 1
    await advance(clock, bridge, 10 * refresh, step=1.0)
    assert await simulator.count("DeviceList") == quiet_calls  # stopped polling the PVS


async def test_warm_start_fetches_devicelist_once_and_no_more_without_clients(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    bridge = await start_bridge(
        simulator.url, clock=clock, cache={"warm_start": True, "refresh": 10.0}
    )
    await idle(bridge)
    await advance(clock, bridge, 100.0, step=1.0)
    assert await simulator.count("DeviceList") == 1  # nobody asked: no refresh-ahead
    first = await bridge.get(DEVICE_LIST)
    assert first.headers["X-Cache"] == "STALE"  # served at once from the warm-up
    assert first.headers["Age"] == "100"


async def test_the_injected_clock_drives_upstream_timeouts(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # A PVS that never answers: the request times out when 30 s pass on the bridge's
    # clock (here a FakeClock moved by hand), not after 30 s of this machine's time.
    clock = FakeClock()
    sim = await start_simulator()
    await sim.fault("hang")
    # The client would wait longer (server.client_wait) than the request may take.
    bridge = await start_bridge(
        sim.url, clock=clock, upstream={"timeout": 30.0}, server={"client_wait": 60.0}
    )
    asked = asyncio.create_task(bridge.get(GET_COMM))
    await asyncio.sleep(0.05)
    await clock.advance(29.0)
    assert not asked.done()
    await clock.advance(2.0)
    answer = await asyncio.wait_for(asked, 10)
    assert answer.status == 504
    document = await answer.json()
    assert document["cause"] == "timeout"
    assert "within 30 s" in document["message"]
