"""The simulated PVS keeps working on a request whose client hung up, as the device does.

A real PVS goes on computing a DeviceList the bridge gave up on; the simulator's handler
runs on too (shielded from aiohttp's cancellation on hang-up) and counts as being served,
in `current` and `max_concurrent`, until its answer is ready. `finish_abandoned=False`
gives the former behaviour: the work stops with the connection.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bridge.clock import FakeClock, settle
from tests.support import DEVICE_LIST, SimulatorFactory, until


@pytest.mark.parametrize("finish_abandoned", [True, False])
async def test_a_request_whose_client_hung_up_is_worked_on_to_its_end(
    start_simulator: SimulatorFactory, finish_abandoned: bool
) -> None:
    clock = FakeClock()
    sim = await start_simulator(
        clock, latency=100.0, latency_on_clock=True, finish_abandoned=finish_abandoned
    )
    stats = sim.simulator.stats
    async with aiohttp.ClientSession() as session:
        asked = asyncio.create_task(session.get(sim.url + DEVICE_LIST))
        await until(lambda: stats.current == 1)
        asked.cancel()  # the client hangs up after a while, as a bridge's timeout does
        await asyncio.gather(asked, return_exceptions=True)
        if finish_abandoned:
            await until(lambda: stats.abandoned == 1)
        else:
            await until(lambda: stats.current == 0)
        again = asyncio.create_task(session.get(sim.url + DEVICE_LIST))
        await until(lambda: stats.total == 2)
        await clock.advance(100.0)  # the abandoned request ends now (the second too)
        async with await again as answer:
            assert answer.status == 200
    await settle()
    document = await sim.stats()
    assert document["current"] == 0
    assert document["max_concurrent"] == (2 if finish_abandoned else 1)
    assert document["abandoned"] == (1 if finish_abandoned else 0)
