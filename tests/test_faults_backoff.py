"""Backoff, maximum staleness, recovery, the gate under hangs, flaky and fragile PVSes."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp

from bridge.clock import Clock, FakeClock
from tests.faultkit import DEVICE_LIST, advance, bridge, health, idle, simulator


async def test_attempts_follow_the_capped_backoff_while_clients_hammer() -> None:
    clock = FakeClock()
    refresh = {"refresh": 1.0, "max_stale": 600.0}
    async with simulator() as sim, bridge(sim.url, clock=clock, cache=refresh) as client:
        assert (await client.get(DEVICE_LIST)).status == 200
        await sim.fault("error500")
        attempts: list[int] = []  # the second at which each failed attempt happened
        answers: set[tuple[int, str]] = set()
        for second in range(1, 301):
            await advance(clock, client, 1.0)
            for _ in range(3):  # three clients poll every second
                response = await client.get(DEVICE_LIST)
                answers.add((response.status, response.headers["X-Cache"]))
            calls = await sim.calls()
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


async def test_after_the_maximum_staleness_the_answer_is_a_json_504() -> None:
    clock = FakeClock()
    async with simulator() as sim, bridge(sim.url, clock=clock) as client:
        assert (await client.get(DEVICE_LIST)).status == 200
        await sim.fault("error500")
        for _ in range(5):  # up to 50 s old: still served (max staleness 60 s in faultkit)
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


async def test_a_hanging_pvs_never_sees_two_requests_at_once() -> None:
    clock = FakeClock()
    async with simulator() as sim, bridge(sim.url, clock=clock) as client:
        await sim.fault("hang")
        # Cold cache: five clients share the one upstream call, which times out.
        answers = await asyncio.gather(*(client.get(DEVICE_LIST) for _ in range(5)))
        assert [a.status for a in answers] == [504] * 5
        assert {(await a.json())["last_good_age_s"] for a in answers} == {None}
        assert await sim.calls() == 1
        for _ in range(6):  # each probe hangs until its timeout; the next waits the backoff
            await clock.advance(20.0)
            answers = await asyncio.gather(*(client.get(DEVICE_LIST) for _ in range(3)))
            assert {a.status for a in answers} <= {504}
            await idle(client)
        stats = await sim.stats()
        assert stats["requests"]["DeviceList"] == 7
        assert stats["max_concurrent"] == 1


async def test_a_flaky_pvs_never_reaches_clients() -> None:
    clock = FakeClock()
    stale = {"max_stale": 600.0}
    async with simulator() as sim, bridge(sim.url, clock=clock, cache=stale) as client:
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


async def test_a_slow_pvs_is_refreshed_behind_the_clients_back() -> None:
    clock = FakeClock()
    async with simulator() as sim, bridge(sim.url, clock=clock) as client:
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


async def _poll(session: aiohttp.ClientSession, url: str, until: float, limit: int) -> list[int]:
    """Poll as hard as possible, bounded in count and in (real) time."""
    loop, statuses = asyncio.get_running_loop(), []
    for _ in range(limit):
        if loop.time() > until:
            break
        try:
            async with session.get(url + DEVICE_LIST) as response:
                await response.read()
                statuses.append(response.status)
        except aiohttp.ClientError:
            statuses.append(0)
    return statuses


async def test_fragile_pvs_reboots_when_polled_directly() -> None:
    async with simulator(latency=0.02) as sim, aiohttp.ClientSession() as session:
        await sim.fault("fragile", **FRAGILE)
        until = asyncio.get_running_loop().time() + 3.0
        await asyncio.gather(*(_poll(session, sim.url, until, 50) for _ in range(4)))
        assert (await sim.faults())["reboots"] >= 1


async def test_fragile_pvs_survives_the_same_clients_through_the_bridge() -> None:
    async with (
        simulator(latency=0.02) as sim,
        bridge(sim.url, clock=Clock(), cache={"refresh": 5.0}) as client,
        aiohttp.ClientSession() as session,
    ):
        await sim.fault("fragile", **FRAGILE)
        until = asyncio.get_running_loop().time() + 6.0
        base = str(client.make_url("")).rstrip("/")
        results = await asyncio.gather(*(_poll(session, base, until, 5000) for _ in range(4)))
        statuses = {status for result in results for status in result}
        assert statuses == {200}
        faults = await sim.faults()
        assert (faults["reboots"], faults["overloads"]) == (0, 0)
        stats = await sim.stats()
        assert stats["max_concurrent"] == 1
        assert 1 <= stats["requests"]["DeviceList"] <= 3
