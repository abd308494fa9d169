"""Clients written for a real PVS work unchanged through the bridge."""

from __future__ import annotations

import json

import aiohttp

from tests.support import BridgeFactory, Sim, SimulatorFactory


async def test_aiohttp_client_with_120s_timeout_and_json(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # The main HA integration: a 120 s timeout and response.json(), which insists on
    # application/json.
    sim = await start_simulator(latency=0.2, inverters=7)
    bridge = await start_bridge(sim.url)
    base = str(bridge.make_url("/cgi-bin/dl_cgi"))
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(base, params={"Command": "DeviceList"}) as response:
            document = await response.json()
        async with session.get(base + "/supervisor/info") as response:
            info = await response.json()
    kinds = [device["DEVICE_TYPE"] for device in document["devices"]]
    assert kinds.count("Inverter") == 7
    assert kinds.count("Power Meter") == 2
    assert kinds.count("PVS") == 1
    assert document["result"] == "succeed"
    assert info["supervisor"]["MODEL"] == "PVS6"


async def test_exporter_sequence_start_getcomm_gridprofile_devicelist_stop(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url)
    results = {}
    for command in ("Start", "Get_Comm", "GridProfileGet", "DeviceList", "Stop"):
        response = await bridge.get("/cgi-bin/dl_cgi", params={"Command": command})
        assert response.status == 200, command
        results[command] = await response.json()
    assert results["Start"]["supervisor"]["SERIAL"]
    assert results["Get_Comm"]["networkstatus"]["interfaces"]
    assert results["GridProfileGet"]["status"] == "success"
    assert results["DeviceList"]["devices"]
    assert results["Stop"] == {"result": "succeed"}
    assert (await simulator.stats())["max_concurrent"] == 1


async def test_line_filtering_client_still_parses(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    # One collector drops body lines that do not start with "{", a tab or "}" because
    # "the http headers sometimes appear in the body": the print layout must survive.
    bridge = await start_bridge(simulator.url)
    text = await (await bridge.get("/cgi-bin/dl_cgi?Command=DeviceList")).text()
    kept = "\n".join(line for line in text.splitlines() if line[:1] in ("{", "\t", "}"))
    assert json.loads(kept) == json.loads(text)
    assert text.startswith('{\n\t"devices":\t[{\n\t\t\t"CURTIME":\t"')
