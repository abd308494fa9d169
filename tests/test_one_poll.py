"""One poll, every consumer: what clients ask costs the PVS only what the device read and
the pacing allow, whatever the clients vary (issue 8's done-when)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientResponse

from bridge.clock import FakeClock
from tests.support import DEVICE_LIST, BridgeFactory, SimulatorFactory

DEVICES_LIST_PATH = "/cgi-bin/dl_cgi/devices/list"
LOGIN = "basic " + base64.b64encode(b"ssm_owner:ABCDE").decode()  # serial ends in ABCDE


async def run_for(
    clock: FakeClock, seconds: float, step: float, each_step: Callable[[], Awaitable[Any]]
) -> None:
    """Move fake time in steps, doing `each_step` at each, and let real I/O catch up."""
    for _ in range(round(seconds / step)):
        await each_step()
        await clock.advance(step)
        await asyncio.sleep(0.005)  # real sockets: let answers that became due arrive


async def until_answered(
    clock: FakeClock, asked: list[asyncio.Task[ClientResponse]], step: float, limit: float
) -> float:
    """Move fake time until every request is answered (at most `limit`); the time it took."""
    elapsed = 0.0
    while not all(task.done() for task in asked) and elapsed < limit:
        await clock.advance(step)
        elapsed += step
        await asyncio.sleep(0.005)
    await asyncio.wait_for(asyncio.gather(*asked), 30)
    return elapsed


async def test_300_distinct_serials_cost_the_pvs_nothing_beyond_the_device_read(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    simulator = await start_simulator(inverters=4)
    bridge = await start_bridge(simulator.url)
    statuses = [
        (await bridge.get(f"/cgi-bin/dl_cgi?Command=DeviceDetails&SerialNumber=X{n:05d}")).status
        for n in range(300)
    ]
    assert statuses == [404] * 300
    assert (await simulator.stats())["requests"] == {"DeviceList": 1}
    # A serial the device list has is forwarded (and then cached): bounded by the devices.
    known = simulator.simulator.site.inverters[0].serial
    for _ in range(5):
        answer = await bridge.get(f"/cgi-bin/dl_cgi?Command=DeviceDetails&SerialNumber={known}")
        assert answer.status == 200
    assert (await simulator.stats())["requests"] == {"DeviceList": 1, "DeviceDetails": 1}


async def test_devicelist_and_devices_list_share_one_read_per_interval(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    simulator = await start_simulator(clock)
    bridge = await start_bridge(simulator.url, clock=clock, cache={"refresh": 3.0})
    bodies: set[bytes] = set()

    async def poll_both() -> None:
        for target in (DEVICE_LIST, DEVICES_LIST_PATH):
            answer = await bridge.get(target)
            assert answer.status == 200
            bodies.add(await answer.read())

    await run_for(clock, 30.0, 0.5, poll_both)
    requests = (await simulator.stats())["requests"]
    heavy = requests.get("DeviceList", 0) + requests.get("devices/list", 0)
    assert 10 <= heavy <= 12, requests  # one per 3 s over 30 s, plus the first
    assert "devices/list" not in requests
    # Both paths got the same bytes from each read (the last may land after the last poll).
    assert heavy - 1 <= len(bodies) <= heavy


async def test_no_two_requests_reach_the_pvs_closer_than_min_interval(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    simulator = await start_simulator(clock)
    bridge = await start_bridge(
        simulator.url, clock=clock, upstream={"min_interval": 1.0}, cache={"ttl_status": 0.0}
    )
    commands = ["DeviceList", "Start", "Get_Comm", "GridProfileGet", "CheckFW", "Stop"]
    asked = [
        asyncio.create_task(bridge.get(f"/cgi-bin/dl_cgi?Command={command}"))
        for command in commands
    ]
    await until_answered(clock, asked, 0.25, 60.0)
    answers = [task.result() for task in asked]
    assert [answer.status for answer in answers] == [200] * len(commands)
    stats = await simulator.stats()
    assert stats["total"] == len(commands)
    assert stats["min_gap_s"] >= 1.0
    assert stats["max_concurrent"] == 1


async def test_300_distinct_vars_names_cost_at_most_what_pacing_allows(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    simulator = await start_simulator(clock, firmware="2025", inverters=2)
    bridge = await start_bridge(
        simulator.url, clock=clock, upstream={"min_interval": 1.0}, rate_limit={"enabled": True}
    )
    login = await bridge.get("/auth?login", headers={"Authorization": LOGIN})
    assert login.status == 200
    held = [f"/vars?name=/sys/info/nothing{n}" for n in range(150)]  # in the device read
    elsewhere = [f"/vars?name=/sys/pvs/thing{n}" for n in range(150)]  # the PVS's to answer
    asked = [asyncio.create_task(bridge.get(target)) for target in held + elsewhere]
    elapsed = await until_answered(clock, asked, 0.5, 300.0)
    statuses = [task.result().status for task in asked]
    assert set(statuses[:150]) == {400}  # held tree, no such variable: from memory
    # The PVS's "no such variable", refused, or (queued past server.client_wait) told to ask again.
    assert set(statuses[150:]) <= {400, 429, 503, 504}
    assert 400 in statuses[150:]  # some did reach the PVS, paced
    stats = await simulator.stats()
    assert stats["total"] <= elapsed / 1.0 + 1
    assert stats["min_gap_s"] >= 1.0
    assert stats["max_concurrent"] == 1
    await clock.advance(1.0)  # the stopping bridge's logout need not wait for its turn
