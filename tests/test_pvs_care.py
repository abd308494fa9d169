"""PVS care (issue 12, point 7): fewer device reads at night, reboots in /health, and a
daily budget of PVS requests past which only the device read goes on.

The simulated site follows the sun on the FakeClock's wall time (UTC-8): its inverters
report `error` and no power from 18:00 to 06:00 local time, as real ones do.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.pvs.budget import seconds_to_midnight
from bridge.site import Snapshot
from bridge.site.model import Device, Kind, LiveTotals, Reading
from bridge.site.night import is_night
from tests.support import (
    DEVICE_LIST,
    GET_COMM,
    BridgeFactory,
    SimulatorFactory,
    advance,
    health,
)

HOUR = 3600.0
# Local (UTC-8) times of 2023-11-15 on the wall clock.
DAY_10H = 1_699_984_800.0  # 10:00 local on the 14th (18:00 UTC)
NIGHT_23H = 1_700_031_600.0  # 23:00 local on the 14th (07:00 UTC on the 15th)
BEFORE_DAWN = NIGHT_23H + 6 * HOUR + 40 * 60  # 05:40 local


def inverter(state: str, kw: float | None) -> Device:
    readings = {} if kw is None else {"p_3phsum_kw": Reading(kw, str(kw), "kW")}
    return Device(Kind.INVERTER, "E001", "AC_Module", state, 0.0, readings)


def site(*inverters: Device) -> Snapshot:
    return Snapshot(0.0, None, None, inverters, (), (), (), LiveTotals())


def test_night_is_every_inverter_asleep_or_without_power() -> None:
    assert is_night(site(inverter("error", 0.0), inverter("working", 0.0)))
    assert is_night(site(inverter("error", None), inverter("error", 0.25)))  # asleep: stale
    assert not is_night(site(inverter("error", 0.0), inverter("working", 0.12)))
    assert not is_night(site(inverter("working", None)))  # no figure: no evidence of night
    assert not is_night(site())  # no inverters: never night
    assert not is_night(None)


async def poll_devicelist(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, wall: float, minutes: int
) -> list[float]:
    """A client asking for the DeviceList every 10 s for `minutes`; when the PVS was read
    (minutes since the start, by the simulator's count after each step)."""
    clock = FakeClock(wall_start=wall)
    sim = await start_simulator(clock)
    bridge = await start_bridge(sim.url, clock=clock, cache={"refresh": 60.0})
    reads: list[float] = []
    seen = 0
    for step in range(minutes * 6 + 1):
        assert (await bridge.get(DEVICE_LIST)).status == 200
        count = await sim.count("DeviceList")
        reads += [step / 6.0] * (count - seen)
        seen = count
        await advance(clock, bridge, 10.0)
    return reads


async def test_at_night_the_devicelist_is_read_every_5_minutes_and_by_day_every_minute(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    night = await poll_devicelist(start_simulator, start_bridge, NIGHT_23H, 30)
    day = await poll_devicelist(start_simulator, start_bridge, DAY_10H, 30)
    assert len(night) in (6, 7), night  # 30 min / 300 s, plus the first read
    assert len(day) in (30, 31), day  # 30 min / 60 s, plus the first read


async def test_at_dawn_the_daytime_interval_comes_back(
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="bridge.cache.night"):
        reads = await poll_devicelist(start_simulator, start_bridge, BEFORE_DAWN, 60)
    before_sunrise = [at for at in reads if at < 20.0]  # 05:40 to 06:00
    after = [at for at in reads if at >= 40.0]  # 06:20 to 06:40
    assert len(before_sunrise) <= 4, reads
    assert len(after) >= 20, reads
    switches = [r.getMessage() for r in caplog.records if r.name == "bridge.cache.night"]
    assert len(switches) == 2, switches  # night once, dawn once
    assert "every 300 s" in switches[0] and "every 60 s" in switches[1]


async def test_a_pvs_reboot_is_logged_once_and_shown_in_health(
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(wall_start=DAY_10H)
    sim = await start_simulator(clock)
    bridge = await start_bridge(sim.url, clock=clock, cache={"refresh": 10.0})
    assert (await bridge.get(DEVICE_LIST)).status == 200
    await advance(clock, bridge, 30.0, step=10.0)
    _, document = await health(bridge)
    assert document["pvs"]["reboots_seen"] == 0
    assert document["pvs"]["last_reboot"] is None
    with caplog.at_level(logging.WARNING, logger="bridge.pvs.reboots"):
        sim.simulator.site.reboot()
        for _ in range(6):  # six reads after the reboot, the uptime growing again
            assert (await bridge.get(DEVICE_LIST)).status == 200
            await advance(clock, bridge, 10.0)
    _, document = await health(bridge)
    assert document["pvs"]["reboots_seen"] == 1
    rebooted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(DAY_10H + 30.0))
    assert document["pvs"]["last_reboot"] == rebooted
    logged = [r for r in caplog.records if "rebooted" in r.getMessage()]
    assert len(logged) == 1


# -- the daily budget ------------------------------------------------------------------

LOCAL_NOON = time.mktime((2023, 11, 14, 12, 0, 0, 0, 0, -1))  # whatever the local zone
BUDGET: dict[str, Any] = {
    "upstream": {"daily_budget": 100},
    # Get_Comm refreshed every second: a client that reaches the PVS on every poll.
    "cache": {"ttl": {"Get_Comm": 1.0}, "max_stale": 600.0, "refresh": 60.0},
}


async def test_past_the_daily_budget_only_the_devicelist_reaches_the_pvs(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock(wall_start=LOCAL_NOON)
    sim = await start_simulator(clock)
    bridge = await start_bridge(sim.url, clock=clock, **BUDGET)
    for _ in range(150):  # bounded: the budget is spent well before
        _, document = await health(bridge)
        if document["upstream"]["today"]["over_budget"]:
            break
        assert (await bridge.get(GET_COMM)).status == 200
        await advance(clock, bridge, 1.0)
    today = document["upstream"]["today"]
    assert (today["sent"], today["budget"], today["refused"]) == (100, 100, 0)
    stats = await sim.stats()
    assert sum(stats["requests"].values()) == 100  # what the PVS saw: exactly the count
    assert document["status"] == "degraded"
    assert any("daily budget of 100 PVS requests spent" in r for r in document["reasons"])

    # A held answer is still served from memory; the PVS is not asked.
    await advance(clock, bridge, 5.0)
    response = await bridge.get(GET_COMM)
    assert (response.status, response.headers["X-Cache"]) == (200, "STALE")
    # A command with nothing held: a JSON 503 with Retry-After until midnight.
    response = await bridge.get("/cgi-bin/dl_cgi?Command=GridProfileGet")
    refusal = await response.json()
    assert (response.status, refusal["error"]) == (503, "over_budget")
    assert "upstream.daily_budget" in refusal["message"]
    assert int(response.headers["Retry-After"]) == math.ceil(seconds_to_midnight(clock.wall()))
    # The device list goes on, past the budget.
    assert (await bridge.get(DEVICE_LIST)).status == 200
    assert await sim.count("DeviceList") == 1
    assert await sim.count("GridProfileGet") == 0
    _, document = await health(bridge)
    assert document["upstream"]["today"]["sent"] == 101
    assert document["upstream"]["today"]["refused"] >= 2

    # After midnight the budget is open again.
    await advance(clock, bridge, seconds_to_midnight(clock.wall()) + 1.0)
    response = await bridge.get("/cgi-bin/dl_cgi?Command=GridProfileGet")
    assert response.status == 200
    assert await sim.count("GridProfileGet") == 1
    _, document = await health(bridge)
    assert not document["upstream"]["today"]["over_budget"]
