"""One poll, every consumer: metrics scraped every second, MQTT publishing to a real
broker and the home page open cost the PVS exactly what one ordinary client costs.

Two identical runs of 60 s on a FakeClock, each with a client polling DeviceList every
5 s (as Home Assistant does): one with nothing else, one with every consumer on. The
simulated PVS counts what reached it in each.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bridge.clock import FakeClock
from tests.support import DEVICE_LIST, SimulatorFactory, bridge_app, bridge_client
from tests.test_mqtt import mosquitto

SECONDS = 60


async def one_minute(sim_factory: SimulatorFactory, **consumers: Any) -> dict[str, Any]:
    """60 fake seconds of a polling client, plus the consumers asked for; the PVS's stats."""
    clock = FakeClock()
    sim = await sim_factory(clock, inverters=4)
    mqtt = {"mqtt": {"url": consumers["mqtt_url"]}} if "mqtt_url" in consumers else {}
    app = bridge_app(sim.url, clock=clock, cache={"refresh": 10.0}, **mqtt)
    async with bridge_client(app) as bridge:
        for second in range(SECONDS):
            if second % 5 == 0:
                assert (await bridge.get(DEVICE_LIST)).status == 200
            if consumers.get("scrape"):
                assert (await bridge.get("/metrics")).status == 200
            if consumers.get("page") and second % 10 == 0:
                assert (await bridge.get("/")).status == 200
                assert (await bridge.get("/site.json")).status == 200
            await clock.advance(1.0)
            await asyncio.sleep(0.01)  # real sockets: let the refresh that came due land
    return await sim.stats()


async def test_metrics_mqtt_and_the_page_add_no_pvs_request(
    start_simulator: SimulatorFactory, tmp_path: Path
) -> None:
    alone = await one_minute(start_simulator)
    async with mosquitto(tmp_path) as broker:
        everything = await one_minute(
            start_simulator, scrape=True, page=True, mqtt_url=broker.url()
        )
    assert alone["requests"] == everything["requests"], (alone, everything)
    assert alone["total"] == everything["total"]
    assert 6 <= alone["requests"]["DeviceList"] <= 1 + SECONDS // 10
