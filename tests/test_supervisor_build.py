"""supervisor/info says a 2025-level build on a legacy PVS (clients.advertise_2025_build)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from bridge import cjson
from bridge.pvs.detect import LEGACY, advertise_2025_build, parse_supervisor
from bridge.pvs.requests import DL_CGI, READ_PATHS, ProxyRequest
from bridge.web.keys import BACKEND, CACHE
from tests.support import (
    FAST_BACKOFF,
    FIXTURES,
    BridgeFactory,
    Client,
    Sim,
    SimulatorFactory,
    pvs_2025,
)

FIXTURE = FIXTURES / "varserver" / "supervisor-info.json"  # a PVS6 on build 61845
INFO = f"{DL_CGI}/supervisor/info"
OFF = {"advertise_2025_build": False}


def info_body(**supervisor: Any) -> bytes:
    return cjson.dumps({"result": "succeed", "supervisor": supervisor}).encode()


LEGACY_PVS6 = info_body(
    SWVER="2024.6, Build 61707", SERIAL="ZT01", MODEL="PVS6", BUILD=61707, FWVER="1.0.0"
)
LEGACY_PVS5 = info_body(SWVER="2024.11, Build 5300", SERIAL="ZT05", MODEL="PVS5", FWVER="1.0.0")


def test_a_2025_build_is_kept_byte_for_byte() -> None:
    assert advertise_2025_build(FIXTURE.read_bytes()) is None
    assert advertise_2025_build(LEGACY_PVS6.replace(b"61707", b"61840")) is None
    assert advertise_2025_build(LEGACY_PVS5.replace(b"5300", b"5412")) is None


def test_a_legacy_pvs6_build_is_said_as_61840_and_nothing_else_changes() -> None:
    said = advertise_2025_build(LEGACY_PVS6)
    assert said is not None
    # Same fields, same order, the PVS's print layout: only the build differs.
    assert said.body == LEGACY_PVS6.replace(b"61707", b"61840")
    assert (said.true_build, said.said_build) == (61707, 61840)
    supervisor = parse_supervisor(said.body)
    assert supervisor is not None and supervisor.build == 61840


def test_the_2025_fixture_made_legacy_is_said_as_61840() -> None:
    legacy = FIXTURE.read_bytes().replace(b"61845", b"61707")
    said = advertise_2025_build(legacy)
    assert said is not None
    assert said.body == legacy.replace(b"61707", b"61840")


def test_a_legacy_pvs5_build_is_said_in_swver_without_adding_build() -> None:
    said = advertise_2025_build(LEGACY_PVS5)
    assert said is not None
    assert said.body == LEGACY_PVS5.replace(b"Build 5300", b"Build 5408")
    assert "BUILD" not in json.loads(said.body)["supervisor"]
    assert (said.true_build, said.said_build) == (5300, 5408)


def test_a_pvs6_with_its_build_only_in_swver_gets_a_build_field() -> None:
    body = info_body(SWVER="2024.6, Build 61707", SERIAL="ZT01", MODEL="PVS6")
    said = advertise_2025_build(body)
    assert said is not None
    assert json.loads(said.body)["supervisor"] == {
        "SWVER": "2024.6, Build 61840",
        "SERIAL": "ZT01",
        "MODEL": "PVS6",
        "BUILD": 61840,
    }


@pytest.mark.parametrize(
    "body",
    [
        info_body(SWVER="2024.6", SERIAL="ZT01", MODEL="PVS6"),  # no build to go by
        b'{"result": "error"}',
        b"not json",
        b"[1, 2]",
        b'{"supervisor": "PVS6"}',
    ],
)
def test_answers_without_a_build_are_kept(body: bytes) -> None:
    assert advertise_2025_build(body) is None


async def direct(sim: Sim) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(sim.url + INFO) as response:
        return await response.read()


async def through(bridge: Client) -> tuple[list[str], list[bytes], list[str | None]]:
    """Two asks through the bridge (a miss, then a hit): X-Cache, bodies, build headers."""
    states, bodies, headers = [], [], []
    for _ in range(2):
        response = await bridge.get(INFO)
        assert response.status == 200
        states.append(response.headers["X-Cache"])
        bodies.append(await response.read())
        headers.append(response.headers.get("X-PVS-Bridge-Build"))
    return states, bodies, headers


async def test_a_legacy_pvs6_through_the_bridge_says_a_2025_build(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url)
    pvs = await direct(simulator)
    states, bodies, headers = await through(bridge)
    assert states == ["MISS", "HIT"]
    for body, header in zip(bodies, headers, strict=True):
        supervisor = json.loads(body)["supervisor"]
        assert supervisor["BUILD"] >= 61840
        assert body == pvs.replace(b"61707", b"61840")
        assert header is not None and "61707" in header
    # The cache keeps the PVS's bytes, and the firmware detector reads the true build.
    lookup = bridge.app[CACHE].from_memory(ProxyRequest(READ_PATHS["supervisor/info"], INFO))
    assert lookup is not None and lookup.answer.body == pvs
    detector = bridge.app[BACKEND].detector
    assert await detector.detect() == LEGACY
    assert detector.supervisor is not None and detector.supervisor.build == 61707


async def test_a_legacy_pvs5_through_the_bridge_says_build_5408_in_swver(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # A PVS5 has no BUILD: its build sits in SWVER.
    sim = await start_simulator(model="PVS5", swver="2024.11, Build 5300", build=None)
    bridge = await start_bridge(sim.url)
    _states, bodies, _headers = await through(bridge)
    supervisor = json.loads(bodies[0])["supervisor"]
    assert supervisor["MODEL"] == "PVS5"
    assert "BUILD" not in supervisor
    found = parse_supervisor(bodies[0])
    assert found is not None and found.build is not None and found.build >= 5408
    assert bodies[0] == (await direct(sim)).replace(b"Build 5300", b"Build 5408")


@pytest.mark.parametrize(
    ("swver", "build"), [("2019.1, Build 9999", 9999), ("2024.6, Build 61707", None)]
)
async def test_a_longer_answer_is_served_whole(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, swver: str, build: int | None
) -> None:
    # A shorter build number, or a PVS6 with its build only in SWVER (BUILD added).
    sim = await start_simulator(swver=swver, build=build)
    bridge = await start_bridge(sim.url)
    _states, bodies, _headers = await through(bridge)
    for body in bodies:
        supervisor = json.loads(body)["supervisor"]
        assert supervisor["BUILD"] == 61840
        assert supervisor["SWVER"].endswith("Build 61840")
        assert len(body) > len(await direct(sim))


async def test_with_the_key_off_the_answer_is_byte_exact(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url, clients=OFF)
    _states, bodies, headers = await through(bridge)
    assert bodies == [await direct(simulator)] * 2
    assert headers == [None, None]


async def test_on_2025_firmware_the_answer_is_the_pvss_own(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    bridge = await start_bridge(sim.url, FAST_BACKOFF)
    _states, bodies, headers = await through(bridge)
    assert bodies == [await direct(sim)] * 2
    assert headers == [None, None]
