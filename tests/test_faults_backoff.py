"""Backoff, maximum staleness, recovery, the gate under hangs, flaky and fragile PVSes."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bridge.clock import FakeClock, settle
from tests.support import (
    DEVICE_LIST,
    FAULT_TIMING,
    BridgeFactory,
    SimulatorFactory,
    advance,
    health,
    idle,
)


async def test_attempts_follow_the_capped_backoff_while_clients_hammer(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    refresh = {"refresh": 1.0, "max_stale": 600.0}
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock, cache=refresh)
    assert (await client.get(DEVICE_LIST)).status == 200
    await sim.fault("error500")
    attempts: list[int] = []  # the second at which each failed attempt happened
    answers: set[tuple[int, str]] = set()
    for second in range(1, 301):
        await advance(clock, client, 1.0)
        for _ in range(3):  # three clients poll every second
            response = await client.get(DEVICE_LIST)
            answers.add((response.status, response.headers["X-Cache"]))
        calls = await sim.count()
        if calls - 1 > len(attempts):
            attempts.append(second)
    assert answers == {(200, "STALE")}  # 900 client requests, never an error
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # initial 2 s, doubling, capped at 16 s (jitter pinned to its maximum); the
    # refresh schedule rounds each wait up to the next whole second here.
    assert gaps[:4] == [2, 4, 8, 16]
    assert set(gaps[4:]) == {16}
    assert len(attempts) == 21  # against 900 client requests
    _status, document = await health(client)
    assert document["upstream"]["breaker"] in ("open", "half-open")
    assert document["upstream"]["consecutive_failures"] == len(attempts)


async def test_after_the_maximum_staleness_the_answer_is_a_json_504(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    assert (await client.get(DEVICE_LIST)).status == 200
    await sim.fault("error500")
    for _ in range(5):  # up to 50 s old: still served (max staleness 60 s in FAULT_TIMING)
        await advance(clock, client, 10.0)
        assert (await client.get(DEVICE_LIST)).status == 200
    await advance(clock, client, 10.5)
    too_old = await client.get(DEVICE_LIST)
    assert too_old.status == 504
    assert too_old.content_type == "application/json"
    body = await too_old.json()
    assert body["error"] == "too_stale"
    assert body["last_good_age_s"] >= 60
    assert "Retry-After" in too_old.headers
    status, document = await health(client)
    assert (status, document["status"]) == (503, "down")
    assert "no data young enough to serve" in document["reasons"]

    await sim.fault("ok")
    await clock.advance(20.0)  # past the backoff; the next client asks for a probe
    back = await client.get(DEVICE_LIST)
    assert (back.status, back.headers["X-Cache"]) == (200, "MISS")
    status, document = await health(client)
    assert (status, document["status"]) == (200, "ok")


async def test_a_hanging_pvs_never_sees_two_requests_at_once(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    await sim.fault("hang")
    # Cold cache: five clients share the one upstream call, which times out.
    answers = await asyncio.gather(*(client.get(DEVICE_LIST) for _ in range(5)))
    assert [a.status for a in answers] == [504] * 5
    assert {(await a.json())["last_good_age_s"] for a in answers} == {None}
    assert await sim.count() == 1
    for _ in range(6):  # each probe hangs until its timeout; the next waits the backoff
        await clock.advance(20.0)
        answers = await asyncio.gather(*(client.get(DEVICE_LIST) for _ in range(3)))
        assert {a.status for a in answers} <= {504}
        await idle(client)
    stats = await sim.stats()
    assert stats["requests"]["DeviceList"] == 7
    assert stats["max_concurrent"] == 1


async def test_a_flaky_pvs_never_reaches_clients(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    stale = {"max_stale": 600.0}
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock, cache=stale)
    assert (await client.get(DEVICE_LIST)).status == 200
    await sim.fault("flaky", fraction=0.5, seed=7, kinds=["error500", "reset", "truncate"])
    states: dict[str, int] = {}
    for _ in range(60):
        await advance(clock, client, 5.0)
        response = await client.get(DEVICE_LIST)
        assert response.status == 200
        assert int(response.headers["Age"]) <= 600
        states[response.headers["X-Cache"]] = states.get(response.headers["X-Cache"], 0) + 1
    injected = (await sim.faults())["injected"]
    assert sum(injected.values()) > 0
    assert set(states) == {"HIT", "STALE"}
    assert (await sim.stats())["max_concurrent"] == 1


async def test_a_slow_pvs_is_refreshed_behind_the_clients_back(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    assert (await client.get(DEVICE_LIST)).status == 200
    await sim.fault("slow", latency=0.3)
    await clock.advance(10.0)
    during = await client.get(DEVICE_LIST)  # while the slow refresh is on its way
    assert during.headers["X-Cache"] == "STALE"
    await idle(client)
    after = await client.get(DEVICE_LIST)
    assert after.headers["X-Cache"] == "HIT"
    assert (await health(client))[1]["status"] == "ok"


FRAGILE: dict[str, Any] = {"rate": 4, "window": 10.0, "strain_limit": 3, "reboot_seconds": 1.0}
# Four clients polling as hard as they can, in fake time: each sends POLLS DeviceLists per
# STEP, for STEPS steps (6 s). Bounded in count; no real time is measured.
CLIENTS, POLLS, STEP, STEPS = 4, 10, 0.5, 12


async def hammer(
    clock: FakeClock,
    session: aiohttp.ClientSession,
    url: str,
    after_step: Callable[[], Awaitable[None]],
) -> list[int]:
    """The four clients against `url`; every status (0 for a failed connection)."""
    statuses: list[int] = []

    async def one_client() -> None:
        for _ in range(POLLS):
            try:
                async with session.get(url + DEVICE_LIST) as response:
                    await response.read()
                    statuses.append(response.status)
            except aiohttp.ClientError:
                statuses.append(0)

    for _ in range(STEPS):
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        await clock.advance(STEP)
        await after_step()
    return statuses


async def test_fragile_pvs_reboots_when_polled_directly(
    start_simulator: SimulatorFactory,
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, latency=0.02)
    await sim.fault("fragile", **FRAGILE)
    async with aiohttp.ClientSession() as session:
        await hammer(clock, session, sim.url, settle)
    assert (await sim.faults())["reboots"] >= 1


async def test_fragile_pvs_survives_the_same_clients_through_the_bridge(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()  # the PVS's and the bridge's
    refresh = 5.0
    sim = await start_simulator(clock, latency=0.02)
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock, cache={"refresh": refresh})
    await sim.fault("fragile", **FRAGILE)
    base = str(client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        statuses = await hammer(clock, session, base, lambda: idle(client))
    assert len(statuses) == CLIENTS * POLLS * STEPS
    assert set(statuses) == {200}
    faults = await sim.faults()
    assert (faults["reboots"], faults["overloads"]) == (0, 0)
    stats = await sim.stats()
    assert stats["max_concurrent"] == 1
    # The cold fetch, then at most one per refresh interval of the (fake) time polled.
    assert 1 <= stats["requests"]["DeviceList"] <= 1 + math.ceil(STEP * STEPS / refresh)
