"""The simulator is realistic: the PVS's print format, shapes, clocks and counters."""

from __future__ import annotations

import json

import aiohttp
import pytest

from bridge import cjson
from bridge.clock import FakeClock
from bridge.simulator import legacy
from bridge.simulator.model import Site
from tests.support import FIXTURES, SimulatorFactory

LEGACY = sorted((FIXTURES / "legacy").glob("*.json"))


@pytest.mark.parametrize("fixture", LEGACY, ids=[path.stem for path in LEGACY])
def test_cjson_prints_real_pvs_payloads_byte_for_byte(fixture: object) -> None:
    text = fixture.read_text()  # type: ignore[attr-defined]
    assert cjson.dumps(json.loads(text)) == text


def test_cjson_prints_the_varserver_supervisor_info_byte_for_byte() -> None:
    text = (FIXTURES / "varserver" / "supervisor-info.json").read_text()
    assert cjson.dumps(json.loads(text)) == text


def test_devicelist_has_the_fixture_fields_for_each_device_kind() -> None:
    fixture = json.loads((FIXTURES / "legacy" / "DeviceList.json").read_text())["devices"]
    site = Site(FakeClock(), inverter_count=3)
    simulated = legacy.device_list(site, "2024.6, Build 61707")["devices"]
    expected = {(device["DEVICE_TYPE"], device.get("TYPE")): set(device) for device in fixture}
    for device in simulated:
        fields = expected[(device["DEVICE_TYPE"], device.get("TYPE"))]
        assert fields <= set(device), device["DEVICE_TYPE"]
        for name, value in device.items():
            if name not in ("panid", "ISDETAIL"):
                assert isinstance(value, str), name  # metric values are strings
    assert len(simulated) == 1 + 2 + 3


def test_values_advance_like_a_real_site() -> None:
    clock = FakeClock(start=0.0, wall_start=1_750_000_000.0)  # 2025-06-15 15:06 UTC
    site = Site(clock, inverter_count=2, utc_offset_hours=-7.0)
    energies, powers, curtimes = [], [], []
    for _ in range(48):  # a day in half-hour steps
        snapshot = legacy.device_list(site, "x")["devices"]
        inverter = snapshot[3]
        energies.append(float(inverter["ltea_3phsum_kwh"]))
        powers.append(float(inverter["p_3phsum_kw"]))
        curtimes.append(snapshot[0]["CURTIME"])
        clock.jump(1800)  # plain time travel; no sleepers involved
    assert energies == sorted(energies)  # counters only grow
    assert energies[-1] > energies[0]
    assert max(powers) > 0.2
    assert min(powers) == 0.0  # night
    assert curtimes == sorted(curtimes)
    assert len(set(curtimes)) == 48


async def test_sim_stats_count_requests_by_command_and_path(
    start_simulator: SimulatorFactory,
) -> None:
    sim = await start_simulator()
    async with aiohttp.ClientSession() as session:
        for target in (
            "/cgi-bin/dl_cgi?Command=DeviceList",
            "/cgi-bin/dl_cgi?Command=DeviceList",
            "/cgi-bin/dl_cgi?Command=Start",
            "/cgi-bin/dl_cgi/supervisor/info",
            "/cgi-bin/dl_cgi?Command=Bogus",
        ):
            async with session.get(sim.url + target) as response:
                await response.read()
                if "Bogus" in target:
                    assert response.status == 403
                    assert json.loads(await response.read())["status"] == 403
    stats = await sim.stats()
    assert stats["requests"] == {
        "DeviceList": 2,
        "Start": 1,
        "supervisor/info": 1,
        "Bogus": 1,
    }
    assert stats["total"] == 5
    assert stats["max_concurrent"] == 1


@pytest.mark.parametrize("firmware", ["legacy", "2025"])
async def test_sim_stats_min_gap_is_the_clock_advance_between_two_requests(
    start_simulator: SimulatorFactory, firmware: str
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, firmware=firmware)
    info = sim.url + "/cgi-bin/dl_cgi/supervisor/info"
    async with aiohttp.ClientSession() as session:

        async def get(url: str) -> None:
            async with session.get(url) as response:
                assert response.status == 200
                await response.read()

        assert (await sim.stats())["min_gap_s"] is None
        await get(info)
        assert (await sim.stats())["min_gap_s"] is None  # one arrival: no gap yet
        await clock.advance(0.75)
        await get(info)
        assert (await sim.stats())["min_gap_s"] == 0.75
        await clock.advance(0.25)
        await get(sim.url + "/_sim/faults")  # control requests do not count as arrivals
        await clock.advance(2.0)
        await get(info)
        assert (await sim.stats())["min_gap_s"] == 0.75  # 2.25 s since the previous one
        await get(info)
        assert (await sim.stats())["min_gap_s"] == 0.0  # two at the same instant
        async with session.post(sim.url + "/_sim/stats/reset") as response:
            assert (await response.json())["min_gap_s"] is None
        await get(info)
        await clock.advance(1.5)
        await get(info)
        stats = await sim.stats()
    assert stats["min_gap_s"] == 1.5
    assert stats["total"] == 2
