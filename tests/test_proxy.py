"""The proxy path: byte-exact answers, normalisation, refusals, HEAD, writes, the gate."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from bridge.clock import FakeClock
from tests.support import (
    DEVICE_LIST,
    BridgeFactory,
    Sim,
    SimulatorFactory,
    idle,
)

FROZEN = FakeClock(start=0.0, wall_start=1_750_000_000.0)  # a fixed moment: identical answers


async def test_answer_is_byte_identical_to_the_pvs(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(clock=FROZEN)
    # supervisor/info is byte-exact with advertise_2025_build off (on: test_supervisor_build).
    bridge = await start_bridge(sim.url, clients={"advertise_2025_build": False})
    for target in (DEVICE_LIST, "/cgi-bin/dl_cgi?Command=Start", "/cgi-bin/dl_cgi/supervisor/info"):
        async with aiohttp.ClientSession() as session, session.get(sim.url + target) as direct:
            direct_body = await direct.read()
            direct_type = direct.headers["Content-Type"]
            direct_status = direct.status
        via_bridge = await bridge.get(target)
        assert via_bridge.status == direct_status == 200
        assert await via_bridge.read() == direct_body
        assert via_bridge.headers["Content-Type"] == direct_type
        assert via_bridge.headers["Server"] == "lighttpd/1.4.35"


async def test_equivalent_queries_share_one_upstream_call_in_canonical_form(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url)
    variants = [
        "/cgi-bin/dl_cgi?Command=CheckFW&type=residential",
        "/cgi-bin/dl_cgi?type=residential&Command=CheckFW",
        "/cgi-bin/dl_cgi?Command=CheckFW&type=residential&_=1700000000",
        "/cgi-bin/dl_cgi?Command=CheckFW&junk=x&type=residential",
    ]
    states = []
    for target in variants:
        response = await bridge.get(target)
        assert response.status == 200
        states.append(response.headers["X-Cache"])
    assert states == ["MISS", "HIT", "HIT", "HIT"]
    assert await simulator.count("CheckFW") == 1


async def test_concurrent_identical_requests_share_one_fetch(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(latency=0.5)
    bridge = await start_bridge(sim.url)
    responses = await asyncio.gather(*(bridge.get(DEVICE_LIST) for _ in range(20)))
    bodies = {await response.read() for response in responses}
    assert [response.status for response in responses] == [200] * 20
    assert len(bodies) == 1
    assert await sim.count("DeviceList") == 1


@pytest.mark.parametrize(
    ("target", "status", "error"),
    [
        ("/cgi-bin/dl_cgi?Command=GridProfileRefresh", 403, "command_not_allowed"),
        ("/cgi-bin/dl_cgi?Command=UpgradeFirmware", 403, "command_not_allowed"),
        ("/cgi-bin/dl_cgi?Command=devicelist", 403, "command_not_allowed"),
        ("/cgi-bin/dl_cgi", 400, "missing_command"),
        ("/cgi-bin/dl_cgi?Command=DeviceList&Command=Start", 400, "repeated_parameter"),
        ("/cgi-bin/dl_cgi?Command=DeviceDetails", 400, "missing_parameter"),
        ("/cgi-bin/dl_cgi?Command=DeviceDetails&SerialNumber=..%2F..", 400, "bad_parameter"),
        ("/cgi-bin/dl_cgi?Command=CheckFW&type=industrial", 400, "bad_parameter"),
        ("/cgi-bin/dl_cgi?Command=Start%00", 400, "control_characters"),
        ("/cgi-bin/dl_cgi?Command=%ff", 400, "bad_encoding"),
        ("/cgi-bin/dl_cgi/firmware/upgrade", 404, "unknown_path"),
        ("/cgi-bin/other", 404, "not_found"),
        ("/etc/passwd", 404, "not_found"),
    ],
)
async def test_refusals_are_json_and_never_reach_the_pvs(
    simulator: Sim, start_bridge: BridgeFactory, target: str, status: int, error: str
) -> None:
    bridge = await start_bridge(simulator.url)
    response = await bridge.get(target)
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert body["error"] == error
    assert body["message"]
    if status == 403:
        assert "DeviceList" in body["allowed"]["commands"]
    assert (await simulator.stats())["total"] == 0


async def test_refused_command_is_named_in_the_answer(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url)
    body = await (await bridge.get("/cgi-bin/dl_cgi?Command=SetCellPurchased")).json()
    assert body["command"] == "SetCellPurchased"
    assert "SetCellPurchased" in body["message"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_get_405_json(
    simulator: Sim, start_bridge: BridgeFactory, method: str
) -> None:
    bridge = await start_bridge(simulator.url)
    response = await bridge.request(method, DEVICE_LIST, data=b"x")
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
    assert (await simulator.stats())["total"] == 0


async def test_head_is_answered_from_the_cache_without_a_body(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url)
    head = await bridge.head(DEVICE_LIST)
    assert head.status == 200
    assert await head.read() == b""
    assert head.headers["X-Cache"] == "MISS"
    get = await bridge.get(DEVICE_LIST)
    assert get.headers["X-Cache"] == "HIT"
    assert int(head.headers["Content-Length"]) == len(await get.read())
    assert (await simulator.stats())["requests"] == {"DeviceList": 1}


async def test_head_and_get_root_answer_for_health_probes(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url)
    assert (await bridge.head("/")).status == 200
    page = await bridge.get("/")
    assert page.status == 200
    assert "pvs-bridge" in await page.text()


async def test_gate_queue_is_bounded_with_503_and_retry_after(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(latency=2.0)  # other commands take 0.2 s
    bridge = await start_bridge(sim.url, upstream={"queue_limit": 2})
    names = [
        "Start",
        "Stop",
        "Get_Comm",
        "GridProfileGet",
        "GetDiscoveryProgress",
        "GetCellPurchased",
        "CheckFW",
    ]
    responses = await asyncio.gather(
        *(bridge.get(f"/cgi-bin/dl_cgi?Command={name}") for name in names)
    )
    statuses = sorted(response.status for response in responses)
    assert statuses.count(200) == 3  # one on the wire, two queued
    refused = [response for response in responses if response.status == 503]
    assert len(refused) == 4
    for response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        assert (await response.json())["error"] == "queue_full"
    stats = await sim.stats()
    assert stats["total"] == 3
    assert stats["max_concurrent"] == 1


async def test_write_commands_need_the_token_and_are_never_cached(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    token = "s3cret-token-for-writes"
    bridge = await start_bridge(simulator.url, writes={"enabled": True, "token": token})
    target = "/cgi-bin/dl_cgi?Command=GridProfileRefresh"
    anonymous = await bridge.get(target)
    assert anonymous.status == 401
    assert (await anonymous.json())["error"] == "unauthorized"
    wrong = await bridge.get(target, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert await simulator.count("GridProfileRefresh") == 0
    for _ in range(2):
        ok = await bridge.get(target, headers={"Authorization": f"Bearer {token}"})
        assert ok.status == 200
        assert ok.headers["X-Cache"] == "BYPASS"
        assert json.loads(await ok.read())["result"] == "succeed"
    assert await simulator.count("GridProfileRefresh") == 2


async def test_device_details_of_an_unknown_serial_never_reaches_the_pvs(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url)
    response = await bridge.get("/cgi-bin/dl_cgi?Command=DeviceDetails&SerialNumber=NOPE")
    assert response.status == 404
    assert (await response.json())["error"] == "unknown_device"
    await idle(bridge)
    # One device read to learn the serials; no DeviceDetails for a serial it lacks.
    assert (await simulator.stats())["requests"] == {"DeviceList": 1}


async def test_an_endpoint_the_pvs_lacks_is_asked_once_per_interval(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # An older PVS has no energy-storage-system/status: its 404 reaches the client as the
    # PVS sent it, but polling it must not reach the PVS every time.
    clock = FakeClock()
    sim = await start_simulator(clock, missing_paths=("energy-storage-system/status",))
    bridge = await start_bridge(sim.url, clock=clock)
    target = "/cgi-bin/dl_cgi/energy-storage-system/status"
    answers = [await bridge.get(target) for _ in range(5)]
    assert [answer.status for answer in answers] == [404] * 5
    assert [answer.headers["X-Cache"] for answer in answers] == ["MISS"] + ["HIT"] * 4
    assert "404 - Not Found" in await answers[-1].text()
    assert await sim.count("energy-storage-system/status") == 1


async def test_a_refusal_never_replaces_good_data(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # A good answer is held; the next one is a 404 (say, mid-firmware-update): clients get
    # the 404 passed on, but the good answer stays and is not advertised as fresh.
    clock = FakeClock()
    sim = await start_simulator(clock)
    bridge = await start_bridge(sim.url, clock=clock, cache={"ttl_status": 10.0})
    target = "/cgi-bin/dl_cgi/network/interfaces"
    assert (await bridge.get(target)).status == 200
    sim.simulator.options.missing_paths = ("network/interfaces",)
    await clock.advance(11.0)
    await bridge.get(target)  # STALE at once, while the refresh brings the 404
    await idle(bridge)
    held = await bridge.get(target)
    assert held.status == 200
    assert held.headers["X-Cache"] in ("STALE", "MISS")
