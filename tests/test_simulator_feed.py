"""The simulator's WebSocket live feed (docs/pvs-api.md section 7), over real loopback sockets.

A FakeClock drives the feed's ticks, so the tests count frames and states instead of
waiting: every wait below is a bounded poll of some state, never a timing assertion.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from bridge.clock import FakeClock, settle
from bridge.simulator import server as sim_server
from bridge.simulator.feed import TELEMETRY_VAR
from bridge.simulator.server import Simulator, SimulatorOptions
from bridge.site.live import FEED_FIELDS
from tests.support import until

WALL = 1_700_000_010.0  # 14:13 local on the site (UTC-8): daylight; a meter period starts here
FIELDS = {"time", *FEED_FIELDS}
ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


@dataclass
class FeedSim:
    """A simulator with its feed on loopback, its FakeClock and an HTTP session."""

    simulator: Simulator
    url: str
    clock: FakeClock
    session: aiohttp.ClientSession
    runner: web.AppRunner

    @property
    def feed_url(self) -> str:
        return self.simulator.feed_url

    @property
    def control(self) -> str:
        return self.simulator.control_url

    async def stats(self) -> dict[str, Any]:
        """`/_sim/stats` over the side door (it answers while the PVS is `down`)."""
        async with self.session.get(f"{self.control}/_sim/stats") as response:
            return sim_server.stats_from(await response.read())

    async def post(self, path: str, document: object) -> tuple[int, dict[str, Any]]:
        async with self.session.post(self.control + path, json=document) as response:
            return response.status, await response.json()

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        """Open a feed connection and wait until the simulator counts it and waits a tick."""
        before = self.simulator.stats.ws_connections_total
        sleepers = len(self.clock._sleepers)
        ws = await self.session.ws_connect(self.feed_url)
        await until(lambda: self.simulator.stats.ws_connections_total == before + 1)
        await until(lambda: len(self.clock._sleepers) > sleepers)
        return ws

    async def tick(self, count: int = 1) -> None:
        """Move the clock one feed interval at a time, once every feed loop waits on it."""
        for _ in range(count):
            await settle()
            await self.clock.advance(self.simulator.options.ws_interval)
            await settle()

    async def login(self) -> str:
        """A 2025 session token."""
        secret = base64.b64encode(f"ssm_owner:{self.simulator.options.serial[-5:]}".encode())
        headers = {"Authorization": "basic " + secret.decode()}
        async with self.session.get(f"{self.url}/auth?login", headers=headers) as response:
            assert response.status == 200
            token: str = (await response.json())["session"]
            return token

    async def vars(self, query: str, token: str | None, post: bool = False) -> tuple[int, str]:
        """A varserver request, GET with a query string or POST with it as the body."""
        headers = {"Cookie": f"session={token}"} if token else {}
        if post:
            call = self.session.post(f"{self.url}/vars", data=query, headers=headers)
        else:
            call = self.session.get(f"{self.url}/vars?{query}", headers=headers)
        async with call as response:
            return response.status, await response.text()


async def frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """Read exactly `count` text frames (bounded); each frame's params."""
    received = []
    for _ in range(count):
        message = await ws.receive(timeout=5)
        assert message.type is WSMsgType.TEXT, message
        document = json.loads(message.data)
        assert document["notification"] == "power"
        received.append(document["params"])
    return received


async def ended(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The next message, which must say the connection ended."""
    message = await ws.receive(timeout=5)
    assert message.type in ENDED, message
    return message


FeedFactory = Callable[..., Awaitable[FeedSim]]


@pytest.fixture
async def start_feed() -> AsyncIterator[FeedFactory]:
    """Simulators serving the feed on free loopback ports, stopped after the test."""
    runners: list[web.AppRunner] = []
    async with aiohttp.ClientSession() as session:

        async def start(**options: Any) -> FeedSim:
            options.setdefault("latency", 0.0)
            options.setdefault("inverters", 2)
            clock = FakeClock(wall_start=WALL)
            simulator = sim_server.build(SimulatorOptions(**options), clock)
            runner, url = await sim_server.start(simulator, "127.0.0.1", 0, ws_port=0)
            runners.append(runner)
            return FeedSim(simulator, url, clock, session, runner)

        yield start
        for runner in runners:
            await runner.cleanup()


async def test_first_frame_has_every_field_then_only_what_changed(
    start_feed: FeedFactory,
) -> None:
    sim = await start_feed(ws_jitter=True)
    assert sim.feed_url.startswith("ws://127.0.0.1:") and sim.feed_url.endswith("/")
    ws = await sim.connect()
    await sim.tick(3)
    first, *later = await frames(ws, 4)
    assert set(first) == FIELDS
    assert first["pv_p"] > 0  # daylight on the site
    for params in later:  # jitter moves the power inside one meter period: nothing else
        assert set(params) == {"time", "pv_p", "net_p"}
    powers = [first["pv_p"]] + [params["pv_p"] for params in later]
    assert all(a != b for a, b in itertools.pairwise(powers))
    times = [first["time"]] + [params["time"] for params in later]
    assert times == [int(WALL) + second for second in range(4)]
    await ws.close()


async def test_steady_output_is_silent_until_the_meter_reads_again(
    start_feed: FeedFactory,
) -> None:
    sim = await start_feed()
    ws = await sim.connect()
    await sim.tick(14)  # still inside the meter's 15-second period: no change, no frame
    assert (await sim.stats())["ws_frames"] == 1
    await sim.tick(1)  # a new meter reading
    assert (await sim.stats())["ws_frames"] == 2
    first, second = await frames(ws, 2)
    assert set(first) == FIELDS
    assert "time" in second and "pv_p" in second
    assert set(second) < FIELDS
    assert "midstate" not in second and "soc" not in second  # unchanged: not sent again
    await ws.close()


@pytest.mark.parametrize(("unit", "scale"), [("s", 1), ("ms", 1000)])
async def test_time_is_seconds_or_milliseconds(
    start_feed: FeedFactory, unit: str, scale: int
) -> None:
    sim = await start_feed(ws_time=unit, ws_jitter=True)
    ws = await sim.connect()
    await sim.tick()
    first, second = await frames(ws, 2)
    assert first["time"] == int(WALL * scale)
    assert second["time"] == int((WALL + 1) * scale)
    assert isinstance(first["time"], int)
    await ws.close()


async def test_2025_feed_is_silent_until_the_enable_write(start_feed: FeedFactory) -> None:
    sim = await start_feed(firmware="2025", ws_jitter=True)
    ws = await sim.connect()
    await sim.tick(3)
    stats = await sim.stats()
    assert stats["ws_connections"] == 1  # accepted...
    assert stats["ws_frames"] == 0  # ...and nothing sent
    assert stats["telemetry_enables"] == 0
    # The write needs a session, as on the PVS.
    status, _ = await sim.vars(f"set={TELEMETRY_VAR}=1", None)
    assert status == 401
    token = await sim.login()
    assert await sim.vars(f"name={TELEMETRY_VAR}", token) == (200, _value_list("0"))
    status, body = await sim.vars(f"set={TELEMETRY_VAR}=1", token, post=True)
    assert status == 200 and json.loads(body)["values"][0]["value"] == "1"
    assert await sim.vars(f"name={TELEMETRY_VAR}", token) == (200, _value_list("1"))
    await sim.tick()
    (first,) = await frames(ws, 1)
    assert set(first) == FIELDS  # the first frame this connection ever got
    stats = await sim.stats()
    assert stats["ws_frames"] == 1
    assert stats["telemetry_enables"] == 1
    # The GET form works too, and `=0` switches it off without counting as an enable.
    assert (await sim.vars(f"set={TELEMETRY_VAR}=0", token))[0] == 200
    await sim.tick(2)
    assert (await sim.stats())["ws_frames"] == 1
    assert (await sim.vars(f"set={TELEMETRY_VAR}=1", token))[0] == 200
    assert (await sim.vars(f"set={TELEMETRY_VAR}=yes", token))[0] == 400
    await sim.tick()
    await frames(ws, 1)
    assert (await sim.stats())["telemetry_enables"] == 2
    await ws.close()


def _value_list(value: str) -> str:
    document = {"count": 1, "values": [{"name": TELEMETRY_VAR, "value": value}]}
    return json.dumps(document, indent=2) + "\n"


async def test_a_reboot_switches_the_2025_feed_off_again(start_feed: FeedFactory) -> None:
    sim = await start_feed(firmware="2025", ws_jitter=True)
    token = await sim.login()
    assert (await sim.vars(f"set={TELEMETRY_VAR}=1", token))[0] == 200
    ws = await sim.connect()
    await frames(ws, 1)
    # A power cycle (Site.reboot) while connected: the connection stays, the frames stop.
    sim.simulator.site.reboot()
    await sim.tick(3)
    assert (await sim.stats())["ws_frames"] == 1
    assert await sim.vars(f"name={TELEMETRY_VAR}", token) == (200, _value_list("0"))
    assert (await sim.vars(f"set={TELEMETRY_VAR}=1", token))[0] == 200
    await sim.tick()
    await frames(ws, 1)
    # `down` and back: a reboot too; the open connection is dropped on the way down.
    assert (await sim.post("/_sim/faults", {"mode": "down"}))[0] == 200
    await ended(ws)
    assert (await sim.post("/_sim/faults", {"mode": "ok"}))[0] == 200
    ws = await sim.connect()
    await sim.tick(3)
    stats = await sim.stats()
    assert stats["ws_frames"] == 2
    assert stats["telemetry_enables"] == 2
    assert sim.simulator.site.boots == 2
    token = await sim.login()  # sessions may outlive a simulated reboot; log in anew anyway
    assert (await sim.vars(f"set={TELEMETRY_VAR}=1", token))[0] == 200
    await sim.tick()
    assert set((await frames(ws, 1))[0]) == FIELDS  # a new connection: everything again
    assert (await sim.stats())["telemetry_enables"] == 3
    await ws.close()


async def test_a_fragile_reboot_switches_the_feed_off(start_feed: FeedFactory) -> None:
    sim = await start_feed(firmware="2025", ws_jitter=True)
    token = await sim.login()
    assert (await sim.vars(f"set={TELEMETRY_VAR}=1", token))[0] == 200
    fragile = {"mode": "fragile", "rate": 0, "strain_limit": 1, "reboot_seconds": 1.0}
    assert (await sim.post("/_sim/faults", fragile))[0] == 200
    ws = await sim.connect()
    await frames(ws, 1)
    with contextlib.suppress(aiohttp.ClientError):  # a 500, unless the reboot cuts it first
        async with sim.session.get(f"{sim.url}/cgi-bin/dl_cgi?Command=DeviceList") as response:
            await response.read()
    await ended(ws)
    await until(lambda: sim.simulator.faults.is_down)
    await sim.tick()  # the reboot takes one second
    await until(lambda: not sim.simulator.faults.is_down)
    assert sim.simulator.faults.stats.reboots == 1
    assert sim.simulator.site.boots == 1
    assert not sim.simulator.feed.telemetry
    ws = await sim.connect()
    await sim.tick(2)
    assert (await sim.stats())["ws_frames"] == 1
    await ws.close()


async def test_the_connection_is_dropped_after_ws_drop(start_feed: FeedFactory) -> None:
    sim = await start_feed(ws_jitter=True, ws_drop=3.0)
    ws = await sim.connect()
    await sim.tick(3)
    assert len(await frames(ws, 3)) == 3  # at 0, 1 and 2 seconds; dropped at 3
    message = await ended(ws)
    assert (message.type, message.data) == (WSMsgType.CLOSE, WSCloseCode.GOING_AWAY)
    await until(lambda: not sim.simulator.feed.connections)
    stats = await sim.stats()
    assert (stats["ws_connections"], stats["ws_connections_total"]) == (0, 1)
    assert stats["ws_frames"] == 3
    ws = await sim.connect()  # a client simply reconnects
    await frames(ws, 1)
    await ws.close()


async def test_stats_count_connections_and_frames(start_feed: FeedFactory) -> None:
    sim = await start_feed()
    status, described = await sim.post("/_sim/feed", {"jitter": True})
    assert status == 200 and described["jitter"] is True
    assert (await sim.post("/_sim/feed", {"jitter": "yes"}))[0] == 400
    assert (await sim.post("/_sim/feed", {"speed": 2}))[0] == 400
    first = await sim.connect()
    second = await sim.connect()
    await sim.tick(2)
    await frames(first, 3)
    await frames(second, 3)  # each connection has its own first frame and changes
    stats = await sim.stats()
    assert stats["ws_connections"] == 2
    assert stats["ws_connections_total"] == 2
    assert stats["ws_frames"] == 6
    assert stats["total"] == 0  # the feed is not an HTTP request
    await first.close()
    await until(lambda: len(sim.simulator.feed.connections) == 1)
    assert (await sim.stats())["ws_connections"] == 1
    async with sim.session.post(f"{sim.control}/_sim/stats/reset") as response:
        reset = await response.json()
    assert (reset["ws_connections"], reset["ws_connections_total"], reset["ws_frames"]) == (1, 0, 0)
    await second.close()


async def test_down_closes_the_feed_and_refuses_new_connections(
    start_feed: FeedFactory,
) -> None:
    sim = await start_feed(ws_jitter=True)
    ws = await sim.connect()
    await frames(ws, 1)
    assert (await sim.post("/_sim/faults", {"mode": "down"}))[0] == 200
    await ended(ws)
    await until(lambda: not sim.simulator.feed.connections)
    with pytest.raises(aiohttp.ClientError):
        await sim.session.ws_connect(sim.feed_url)
    assert (await sim.stats())["ws_connections"] == 0
    assert (await sim.post("/_sim/faults", {"mode": "ok"}))[0] == 200
    ws = await sim.connect()  # legacy firmware: the feed is on again after the reboot
    await frames(ws, 1)
    await ws.close()


async def test_cleanup_closes_open_feed_connections() -> None:
    simulator = sim_server.build(SimulatorOptions(latency=0.0, inverters=1, ws_jitter=True))
    runner, _url = await sim_server.start(simulator, "127.0.0.1", 0, ws_host="127.0.0.1", ws_port=0)
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(simulator.feed_url)
            await frames(ws, 1)  # legacy firmware: the first frame comes at once
            pending = asyncio.create_task(ws.receive(timeout=5))
        finally:
            await runner.cleanup()
        message = await pending
        assert message.type is WSMsgType.CLOSE
        assert message.data == WSCloseCode.GOING_AWAY
        assert not simulator.feed.connections
        with pytest.raises(aiohttp.ClientError):
            await session.ws_connect(simulator.feed_url)


async def test_the_feed_port_wants_a_websocket(start_feed: FeedFactory) -> None:
    sim = await start_feed()
    async with sim.session.get(sim.feed_url.replace("ws://", "http://")) as response:
        assert response.status == 426
    assert (await sim.stats())["ws_connections_total"] == 0


async def test_a_pvs5_has_no_feed(start_feed: FeedFactory) -> None:
    sim = await start_feed(firmware="2025", model="PVS5")
    assert sim.feed_url == ""
    token = await sim.login()
    assert (await sim.vars(f"set={TELEMETRY_VAR}=1", token))[0] == 400
    assert (await sim.vars(f"name={TELEMETRY_VAR}", token))[0] == 400
    assert (await sim.stats())["telemetry_enables"] == 0


@pytest.mark.parametrize(
    "options", [{"ws_time": "us"}, {"ws_drop": 0}, {"ws_interval": -1.0}, {"ws_drop": True}]
)
def test_bad_feed_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ws_"):
        sim_server.build(SimulatorOptions(**options))
