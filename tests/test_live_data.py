"""Live data end to end: the PVS's WebSocket feed through the bridge to every client.

Real sockets throughout: the simulated PVS serves its feed, the bridge keeps one
connection to it and serves its own feed listener (as `pvs-bridge serve` does on port
9002), and clients are plain aiohttp WebSockets or pypvs's own PVSWebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from bridge.web import keys
from tests.support import BridgeFactory, Client, Sim, SimulatorFactory, until

LIVE_FIELDS = ("pv_p", "pv_en", "net_p", "net_en", "site_load_p", "site_load_en")


@contextlib.asynccontextmanager
async def feed_listener(bridge: Client) -> AsyncIterator[tuple[str, int]]:
    """The bridge's feed application on a loopback port, as the CLI serves listen_ws."""
    runner = web.AppRunner(bridge.app[keys.FEED_APP], access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield host, port
    finally:
        await runner.cleanup()


async def feed_sim(start_simulator: SimulatorFactory, **options: Any) -> Sim:
    """A simulated PVS serving its feed, with values changing every tick."""
    sim = await start_simulator(feed=True, inverters=4, **options)
    async with sim.session.post(f"{sim.control}/_sim/feed", json={"jitter": True}) as answer:
        assert answer.status == 200
    return sim


async def feed_bridge(start_bridge: BridgeFactory, sim: Sim, **sections: Any) -> Client:
    upstream = {"ws_url": sim.simulator.feed_url, "ws_silence": 5.0, **sections.pop("upstream", {})}
    return await start_bridge(sim.url, upstream=upstream, **sections)


class Listener:
    """A plain WebSocket client that records every frame it gets."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url
        self.frames: list[str] = []
        self.closed = asyncio.Event()

    async def run(self) -> None:
        async with self.session.ws_connect(self.url) as ws:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.frames.append(str(message.data))
        self.closed.set()


async def test_pypvs_reads_the_simulators_live_data_through_the_bridge(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    from pypvs.pvs_websocket import PVSWebSocket

    sim = await feed_sim(start_simulator)
    bridge = await feed_bridge(start_bridge, sim)
    async with feed_listener(bridge) as (host, port):
        client = PVSWebSocket(host, port)
        changed: list[set[str]] = []
        client.add_listener(changed.append)
        await client.connect()
        try:
            await until(lambda: len(changed) >= 3, tries=400, pause=0.05)
            data = client.live_data
            assert data is not None
            state = bridge.app[keys.FEED].state  # what the bridge merged from the PVS
            for name in LIVE_FIELDS:
                assert getattr(data, name) == state.fields[name], name
            truth = sim.simulator.site.livedata(sim.simulator.clock.wall())
            assert abs((data.pv_p or 0.0) - truth["pv_p"]) < 0.5  # jittered, near the truth
        finally:
            await client.disconnect()
    assert (await sim.stats())["ws_connections_total"] == 1


async def test_200_clients_each_get_every_frame_over_one_upstream_connection(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await feed_sim(start_simulator)
    bridge = await feed_bridge(start_bridge, sim, server={"ws_max_clients": 256})
    unbounded = aiohttp.TCPConnector(limit=0)  # each WebSocket holds a connection
    async with (
        feed_listener(bridge) as (host, port),
        aiohttp.ClientSession(connector=unbounded) as session,
    ):
        listeners = [Listener(session, f"ws://{host}:{port}/") for _ in range(200)]
        tasks = [asyncio.create_task(listener.run()) for listener in listeners]
        await until(lambda: all(listener.frames for listener in listeners), tries=400, pause=0.05)
        # Every frame the PVS sends from now on reaches every client, in order.
        marks = [len(listener.frames) for listener in listeners]
        upstream = bridge.app[keys.FEED]
        first = upstream.describe()["frames"]
        await until(lambda: upstream.describe()["frames"] >= first + 5, tries=400, pause=0.05)
        last = upstream.describe()["frames"]

        def all_delivered() -> bool:
            pairs = zip(listeners, marks, strict=True)
            return all(len(listener.frames) - mark >= last - first for listener, mark in pairs)

        await until(all_delivered, tries=400, pause=0.05)
        reference = listeners[0].frames[marks[0] :][: last - first]
        for listener, mark in zip(listeners, marks, strict=True):
            assert listener.frames[mark:][: last - first] == reference
        assert all(json.loads(frame)["notification"] == "power" for frame in reference)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    stats = await sim.stats()
    assert stats["ws_connections_total"] == 1
    assert stats["ws_connections"] <= 1


async def test_after_a_pvs_reboot_the_feed_resumes_and_clients_stay(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await feed_sim(start_simulator, firmware="2025")
    bridge = await feed_bridge(start_bridge, sim, upstream={"min_interval": 0.0})
    async with feed_listener(bridge) as (host, port), aiohttp.ClientSession() as session:
        listener = Listener(session, f"ws://{host}:{port}/")
        task = asyncio.create_task(listener.run())
        await until(lambda: len(listener.frames) >= 3, tries=400, pause=0.05)
        assert (await sim.stats())["telemetry_enables"] == 1  # switched on before connecting
        await sim.fault("down")
        await sim.fault("ok")  # back up: rebooted, telemetry off again
        async with sim.session.post(f"{sim.control}/_sim/feed", json={"jitter": True}):
            pass
        seen = len(listener.frames)
        # The bridge notices the reboot (its device read's uptime went down) or the
        # dropped socket, reconnects and switches the feed on again, once.
        await bridge.get("/cgi-bin/dl_cgi?Command=DeviceList")
        await until(lambda: len(listener.frames) >= seen + 3, tries=800, pause=0.05)
        assert not listener.closed.is_set()  # the client never noticed
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stats = await sim.stats()
    assert stats["telemetry_enables"] == 2  # one per boot
    assert stats["ws_connections"] <= 1


async def test_with_no_upstream_feed_live_frames_are_derived_from_each_read(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(inverters=4)
    bridge = await start_bridge(sim.url, upstream={"ws_url": "off"}, cache={"refresh": 60.0})
    async with feed_listener(bridge) as (host, port), aiohttp.ClientSession() as session:
        assert (await bridge.get("/cgi-bin/dl_cgi?Command=DeviceList")).status == 200
        async with session.ws_connect(f"ws://{host}:{port}/") as ws:
            first = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
    assert first["notification"] == "power"
    params = first["params"]
    truth = sim.simulator.site.livedata(sim.simulator.clock.wall())
    assert abs(params["pv_p"] - truth["pv_p"]) < 0.01
    assert abs(params["site_load_p"] - truth["site_load_p"]) < 0.01
    health = await (await bridge.get("/health")).json()
    assert health["live"]["source"] == "derived"
    assert health["live"]["upstream_feed"]["state"] == "off"
    assert (await sim.stats())["ws_connections_total"] == 0
