"""Every fault mode, injected through the simulator's control endpoint, seen through the bridge.

Time on the bridge side is a FakeClock: backoff and staleness are moved by hand and
upstream attempts are counted, never timed. Only the bridge's own timeouts (1 s here)
run on real time, because they are aiohttp's.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.pvs.answer import Answer
from bridge.pvs.client import answer_problem
from tests.support import (
    DEVICE_LIST,
    FAULT_TIMING,
    BridgeFactory,
    SimulatorFactory,
    advance,
    health,
    idle,
)

# (mode, extra control parameters, how the failed refresh shows up in /health)
FAILING_MODES: list[tuple[str, dict[str, Any], str]] = [
    ("error500", {}, "HTTP 500"),
    ("error403", {}, "HTTP 403"),
    ("reset", {}, "failed"),
    ("truncate", {}, "failed"),
    ("truncate", {"declare": "half"}, "not valid JSON"),
    ("hang", {}, "did not answer"),
    ("down", {}, "failed"),
]


@pytest.mark.parametrize(
    ("mode", "params", "why"), FAILING_MODES, ids=[f"{m}-{p}" for m, p, _ in FAILING_MODES]
)
async def test_a_failing_pvs_is_hidden_behind_honest_stale_data(
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    mode: str,
    params: dict[str, Any],
    why: str,
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    first = await client.get(DEVICE_LIST)
    assert first.status == 200
    assert first.headers["X-Cache"] == "MISS"
    good = await first.read()

    await sim.fault(mode, **params)
    await advance(clock, client, 10.0)  # the entry expires; the refresh fails
    assert await sim.count() == (1 if mode == "down" else 2)

    await clock.advance(5.0)
    stale = await client.get(DEVICE_LIST)
    assert stale.status == 200
    assert stale.headers["X-Cache"] == "STALE"
    assert stale.headers["Age"] == "15"  # true age of the data, not of the refresh
    assert "110" in stale.headers["Warning"]
    assert await stale.read() == good

    status, document = await health(client)
    assert status == 200
    assert document["status"] == "degraded"
    upstream = document["upstream"]
    assert why in upstream["last_error"]["message"]
    assert upstream["failing_since"] is not None
    assert upstream["next_attempt_in_s"] > 0
    assert any(why in reason for reason in document["reasons"])

    await sim.fault("ok")
    await advance(clock, client, 10.0)  # past the backoff: the next refresh succeeds
    fresh = await client.get(DEVICE_LIST)
    assert fresh.headers["X-Cache"] == "HIT"
    assert int(fresh.headers["Age"]) < 10  # refreshed since the PVS came back
    status, document = await health(client)
    assert (status, document["status"], document["reasons"]) == (200, "ok", [])
    assert (await sim.stats())["max_concurrent"] == 1


async def test_clients_never_wait_on_a_hanging_pvs_when_data_exists(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    assert (await client.get(DEVICE_LIST)).status == 200
    await sim.fault("hang")
    await clock.advance(10.0)  # the refresh goes out and hangs
    for _ in range(50):
        if (await sim.stats())["current"] == 1:
            break
        await idle(client, 0.02)
    answers = [await client.get(DEVICE_LIST) for _ in range(5)]
    # All five were answered while the PVS still held the refresh request.
    assert (await sim.stats())["current"] == 1
    assert [a.headers["X-Cache"] for a in answers] == ["STALE"] * 5
    await idle(client)  # the refresh times out (1 s, real) and the bridge lets go
    stats = await sim.stats()
    assert (stats["current"], stats["max_concurrent"]) == (0, 1)


async def test_meters_vanishing_is_rejected_counted_and_reported(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    good = await (await client.get(DEVICE_LIST)).read()
    await sim.fault("nometers")
    await advance(clock, client, 10.0)
    await clock.advance(1.0)
    answer = await client.get(DEVICE_LIST)
    assert answer.headers["X-Cache"] == "STALE"
    assert await answer.read() == good
    status, document = await health(client)
    assert (status, document["status"]) == (200, "degraded")
    assert "Power Meter" in " ".join(document["reasons"])
    assert document["cache"]["served"]["rejected"] == 1
    # Retried on the normal schedule (one TTL later), not in a loop.
    await advance(clock, client, 10.0)
    assert await sim.count() == 3
    await sim.fault("ok")
    await advance(clock, client, 10.0)
    assert (await client.get(DEVICE_LIST)).headers["X-Cache"] == "HIT"
    assert (await health(client))[1]["status"] == "ok"


async def test_inverters_in_error_state_at_night_are_data_not_a_fault(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # 10:00 UTC is 02:00 at the simulated site (UTC-8): every inverter reports "error".
    sim_clock = FakeClock(wall_start=1_700_006_400.0 - 1_700_006_400.0 % 86400 + 36000)
    clock = FakeClock()
    sim = await start_simulator(sim_clock)
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    assert (await client.get(DEVICE_LIST)).status == 200
    await sim_clock.advance(600.0)
    await advance(clock, client, 10.0)
    answer = await client.get(DEVICE_LIST)
    assert answer.headers["X-Cache"] == "HIT"
    assert b'"error"' in await answer.read()
    assert (await health(client))[1]["status"] == "ok"


async def test_a_403_burst_on_legacy_firmware_is_a_fault_not_a_firmware_upgrade(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # Legacy units answer 403 to everything (supervisor/info included) until a reboot.
    # That must count as the PVS failing, with backoff, and must not switch the bridge
    # to the 2025 login flow, which would stick after the PVS recovers.
    clock = FakeClock()
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    assert (await client.get(DEVICE_LIST)).status == 200
    await sim.fault("error403")
    for _ in range(3):
        await advance(clock, client, 11.0)  # past the refresh interval each time
        assert (await client.get(DEVICE_LIST)).headers["X-Cache"] == "STALE"
    await advance(clock, client, 1.0)
    _status, document = await health(client)
    assert document["upstream"]["firmware"] == "legacy"
    assert document["upstream"]["consecutive_failures"] >= 1
    # never tried the 2025 flow (/auth, /vars): only legacy reads reached the PVS
    assert set((await sim.stats())["requests"]) <= {"DeviceList", "supervisor/info"}
    await sim.fault("ok")
    await advance(clock, client, 60.0)
    fresh = await client.get(DEVICE_LIST)
    assert fresh.headers["X-Cache"] == "HIT"
    _status, document = await health(client)
    assert document["status"] == "ok"
    assert document["upstream"]["firmware"] == "legacy"


def test_an_answer_nested_past_the_stack_is_a_bad_answer_not_a_crash() -> None:
    # json.loads raises RecursionError (not ValueError) on deep nesting: it must count as
    # a body that is not JSON (a PVS fault), never escape as a 500 or end refresh-ahead.
    body = b"[" * 200_000 + b"]" * 200_000
    problem = answer_problem(Answer(200, body, "application/json"), expect_json=True)
    assert problem == f"a body that is not valid JSON ({len(body)} bytes)"
