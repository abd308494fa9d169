"""The truth about a hung PVS (issue 12, point 6, and the recovery line of point 8).

The simulated PVS's latency runs on the bridge's FakeClock, so a DeviceList that hangs
for minutes plays out exactly: `/health` turns `degraded` once the request in flight is
far overdue and `ok` again once it lands; a client with nothing servable waits at most
`server.client_wait` while the one read goes on and fills the cache; after a timeout the
PVS, still working on the abandoned request, is left alone for `upstream.after_timeout`;
and one plain log line says when the PVS answers again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from aiohttp import ClientResponse

from bridge.clock import FakeClock, settle
from bridge.web.keys import CACHE
from tests.support import (
    DEVICE_LIST,
    BridgeFactory,
    Client,
    Sim,
    SimulatorFactory,
    advance,
    health,
    until,
)

SLOW = {"devicelist_timeout": 120.0}


async def in_flight_at_the_pvs(sim: Sim, requests: int = 1) -> None:
    """Wait (bounded) until the simulated PVS is working on `requests` requests."""

    async def working() -> bool:
        return int((await sim.stats())["current"]) == requests

    await until(working)


async def answered(clock: FakeClock, asked: asyncio.Task[ClientResponse]) -> ClientResponse:
    """Move fake time half a second at a time until `asked` is answered (bounded)."""
    for _ in range(1000):
        if asked.done():
            return asked.result()
        await clock.advance(0.5)
        await asyncio.sleep(0.005)
    raise AssertionError("never answered")


async def reasons(bridge: Client) -> list[str]:
    _status, document = await health(bridge)
    found: list[str] = document["reasons"]
    return found


async def test_health_is_degraded_while_a_device_list_is_far_overdue_then_ok_again(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, latency=3.0, latency_on_clock=True)
    bridge = await start_bridge(sim.url, clock=clock, upstream=SLOW, cache={"refresh": 60.0})
    first = await answered(clock, asyncio.create_task(bridge.get(DEVICE_LIST)))
    assert first.status == 200  # it took 3 s: the usual time, so far
    status, document = await health(bridge)
    assert (status, document["status"]) == (200, "ok")
    assert document["upstream"]["usual_s"] == {"DeviceList": 3.0}

    sim.simulator.options.latency = 100.0  # the next DeviceList hangs for 100 s
    await clock.advance(57.0)  # one interval after the first read started: the refresh
    await in_flight_at_the_pvs(sim)
    await clock.advance(15.0)  # 15 s in flight: long, but 15 s is the least that is overdue
    status, document = await health(bridge)
    assert (status, document["status"], document["reasons"]) == (200, "ok", [])
    assert document["upstream"]["in_flight"]["command"] == "DeviceList"
    assert document["upstream"]["in_flight"]["overdue_after_s"] == 15.0  # max(15, 3 x 3 s)

    clock.jump(32.0)  # 47 s in flight: far overdue
    status, document = await health(bridge)
    assert (status, document["status"]) == (200, "degraded")
    assert document["reasons"] == ["DeviceList in flight for 47 s (usually 3 s)"]
    assert document["upstream"]["in_flight"]["for_s"] == 47.0

    sim.simulator.options.latency = 3.0  # for the refresh after this one
    await clock.advance(53.0)  # the PVS answers at last (100 s)

    async def landed() -> bool:
        return (await health(bridge))[1]["upstream"]["usual_s"]["DeviceList"] == 100.0

    await until(landed)  # the p95 of 3 s and 100 s
    status, document = await health(bridge)
    assert (status, document["status"], document["reasons"]) == (200, "ok", [])
    assert (await sim.stats())["max_concurrent"] == 1


async def test_with_no_answer_seen_yet_half_the_timeout_is_overdue(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, latency=200.0, latency_on_clock=True)
    bridge = await start_bridge(sim.url, clock=clock, upstream=SLOW)
    asked = asyncio.create_task(bridge.get(DEVICE_LIST))
    await in_flight_at_the_pvs(sim)
    await clock.advance(60.0)  # half the 120 s timeout: not yet
    assert await reasons(bridge) == ["waiting for the first answer from the PVS"]
    clock.jump(1.0)
    assert await reasons(bridge) == [
        "waiting for the first answer from the PVS",
        "DeviceList in flight for 61 s (no answer to it seen yet)",
    ]
    assert (await asked).status == 504  # the client stopped waiting at client_wait


async def test_a_client_with_nothing_servable_waits_client_wait_then_gets_a_json_504(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, latency=100.0, latency_on_clock=True)
    bridge = await start_bridge(sim.url, clock=clock, upstream=SLOW, server={"client_wait": 30})
    asked = asyncio.create_task(bridge.get(DEVICE_LIST))
    await in_flight_at_the_pvs(sim)
    await clock.advance(29.5)
    await asyncio.sleep(0.05)
    assert not asked.done()  # still waiting for the PVS
    await clock.advance(0.5)
    answer = await asked
    assert answer.status == 504
    assert answer.content_type == "application/json"
    assert answer.headers["Retry-After"] == "30"
    body: dict[str, Any] = await answer.json()
    assert (body["error"], body["status"]) == ("still_waiting", 504)
    assert "DeviceList within 30 s" in body["message"]
    assert await sim.count() == 1

    await clock.advance(70.0)  # the read went on; the PVS answers it at 100 s
    await until(lambda: bridge.app[CACHE].fetching == 0)
    later = await bridge.get(DEVICE_LIST)
    assert (later.status, later.headers["X-Cache"]) == (200, "HIT")
    stats = await sim.stats()
    assert (stats["requests"], stats["max_concurrent"]) == ({"DeviceList": 1}, 1)


async def test_the_2025_api_on_a_legacy_pvs_waits_no_longer(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, latency=100.0, latency_on_clock=True)
    bridge = await start_bridge(
        sim.url, clock=clock, upstream={**SLOW, "firmware": "legacy"}, server={"client_wait": 20}
    )
    query = "/vars?name=/sys/info/serialnum"  # answered from the device list, before login
    asked = asyncio.create_task(bridge.get(query))
    await in_flight_at_the_pvs(sim)
    await clock.advance(20.0)
    answer = await asked
    assert (answer.status, answer.headers["Retry-After"]) == (504, "20")
    assert (await answer.json())["error"] == "still_waiting"
    await clock.advance(80.0)
    await until(lambda: bridge.app[CACHE].fetching == 0)
    later = await bridge.get(query)
    assert (later.status, later.headers["X-Cache"]) == (200, "HIT")
    assert (await sim.stats())["requests"] == {"DeviceList": 1}


@pytest.mark.parametrize(("after_timeout", "most_at_once"), [(300.0, 1), (0.0, 2)])
async def test_after_a_timeout_the_pvs_still_busy_never_sees_a_second_request(
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    after_timeout: float,
    most_at_once: int,
) -> None:
    clock = FakeClock()
    # The PVS takes 100 s over a DeviceList, and keeps at it after the bridge gives up.
    sim = await start_simulator(clock, latency=100.0, latency_on_clock=True)
    bridge = await start_bridge(
        sim.url,
        clock=clock,
        upstream={"devicelist_timeout": 60, "backoff_initial": 2, "after_timeout": after_timeout},
        server={"client_wait": 600},
    )
    asked = asyncio.create_task(bridge.get(DEVICE_LIST))
    await in_flight_at_the_pvs(sim)
    await clock.advance(60.0)
    assert (await asked).status == 504  # timed out; the PVS works on
    await until(lambda: bridge.app[CACHE].fetching == 0)
    await until(lambda: sim.simulator.stats.abandoned == 1)
    for _ in range(40):  # a client asks every 10 s for 400 s
        retry = asyncio.create_task(bridge.get(DEVICE_LIST))
        await clock.advance(10.0)
        await settle()
        await asyncio.sleep(0.01)
        if retry.done():
            assert (await retry).status in (200, 504)
        else:
            retry.cancel()
    stats = await sim.stats()
    assert stats["max_concurrent"] == most_at_once
    if after_timeout:
        # The abandoned read ended at 100 s; the next went out at 360 s, alone.
        assert stats["requests"]["DeviceList"] == 2


async def test_one_plain_line_says_when_the_pvs_answers_again(
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    bridge = await start_bridge(
        sim.url,
        clock=clock,
        upstream={"backoff_initial": 2.0, "backoff_max": 16.0},
        cache={"refresh": 10.0, "max_stale": 900.0},
    )
    assert (await bridge.get(DEVICE_LIST)).status == 200
    await sim.fault("error500")
    caplog.set_level(logging.INFO, logger="bridge")
    for _ in range(43):  # 7 min 10 s of a failing PVS, a client asking every 10 s
        await advance(clock, bridge, 10.0)
        assert (await bridge.get(DEVICE_LIST)).status == 200  # served from memory
    await sim.fault("ok")
    for _ in range(20):
        await advance(clock, bridge, 1.0)
        await bridge.get(DEVICE_LIST)
    messages = [record.getMessage() for record in caplog.records]
    lines = [r for r in caplog.records if "answering again" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    said = re.fullmatch(
        r"PVS answering again after (\d+) min \((\d+) failed attempts\)", lines[0].getMessage()
    )
    assert said is not None, lines[0].getMessage()
    failed = sum("upstream DeviceList failed" in message for message in messages)
    assert failed > 20
    assert (int(said[1]), int(said[2])) == (7, failed)
