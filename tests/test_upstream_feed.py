"""The one upstream WebSocket feed (bridge/pvs/feed.py) against the simulated PVS, over loopback.

Two FakeClocks: the simulator's drives its feed's ticks (and so its frames), the feed's
drives silence, reconnect spacing and backoff. Nothing here asserts on wall-clock time:
every wait is a bounded poll of a count or a state.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.clock import FakeClock, settle
from bridge.pvs.backoff import Backoff
from bridge.pvs.feed import UpstreamFeed
from bridge.pvs.feed_connect import resolve_url, shown_url
from bridge.pvs.feed_switch import TELEMETRY_VAR, Enable
from bridge.simulator import server as sim_server
from bridge.simulator.server import Simulator, SimulatorOptions
from bridge.site.live import FEED_FIELDS
from tests.support import until

WALL = 1_700_000_010.0  # daylight on the simulated site, at the start of a meter period
SILENCE = 20.0
FIELDS = set(FEED_FIELDS)


@dataclass
class Rig:
    """A simulator serving the feed, an HTTP session to it, and the feeds under test."""

    simulator: Simulator
    url: str
    sim_clock: FakeClock
    http: aiohttp.ClientSession
    runner: web.AppRunner
    clock: FakeClock = field(default_factory=FakeClock)  # the feed's
    received: list[str] = field(default_factory=list)
    answering: bool = True  # what the feed's pvs_answering() says
    feeds: list[tuple[UpstreamFeed, asyncio.Task[None]]] = field(default_factory=list)

    @property
    def stats(self) -> dict[str, Any]:
        return self.simulator.stats_document()

    def feed(
        self,
        enable: Enable | None,
        *,
        url: str | None = None,
        initial: float = 2.0,
        maximum: float = 8.0,
    ) -> UpstreamFeed:
        """Start a feed (its run() as a task), as the app will."""
        backoff = Backoff(self.clock, initial=initial, maximum=maximum, jitter=lambda: 1.0)
        feed = UpstreamFeed(
            self.simulator.feed_url if url is None else url,
            self.clock,
            backoff,
            self.received.append,
            enable=enable,
            pvs_answering=lambda: self.answering,
            silence=SILENCE,
        )
        self.feeds.append((feed, asyncio.create_task(feed.run())))
        return feed

    async def enable(self) -> bool:
        """What the app passes, done here over plain HTTP: log in, then the varserver write."""
        secret = base64.b64encode(f"ssm_owner:{self.simulator.options.serial[-5:]}".encode())
        headers = {"Authorization": "basic " + secret.decode()}
        async with self.http.get(f"{self.url}/auth?login", headers=headers) as response:
            token = (await response.json())["session"]
        target = f"{self.url}/vars?set={TELEMETRY_VAR}=1"
        async with self.http.get(target, headers={"Cookie": f"session={token}"}) as response:
            await response.read()
            if response.status == 400:
                return False  # no such variable
            response.raise_for_status()
            return True

    async def tick(self, count: int = 1) -> None:
        """Move the simulator's clock one feed interval at a time."""
        for _ in range(count):
            await settle()
            await self.sim_clock.advance(self.simulator.options.ws_interval)
            await settle()

    async def frames_flow(self, seconds: int) -> None:
        """Both clocks move `seconds`, one second at a time, a frame arriving each second."""
        for _ in range(seconds):
            expected = len(self.received) + 1
            await self.tick()
            await self.frames_received(expected)
            await self.clock.advance(1.0)

    async def frames_received(self, count: int) -> None:
        """Wait (bounded) until on_frame has had `count` frames."""
        await until(lambda: len(self.received) >= count)

    async def fault(self, mode: str) -> None:
        async with self.http.post(
            f"{self.simulator.control_url}/_sim/faults", json={"mode": mode}
        ) as response:
            assert response.status == 200


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def start_rig() -> AsyncIterator[RigFactory]:
    """Simulators with their feed on free loopback ports; feeds closed, then simulators."""
    rigs: list[Rig] = []
    async with aiohttp.ClientSession() as http:

        async def start(**options: Any) -> Rig:
            options.setdefault("latency", 0.0)
            options.setdefault("inverters", 2)
            clock = FakeClock(wall_start=WALL)
            simulator = sim_server.build(SimulatorOptions(**options), clock)
            runner, url = await sim_server.start(simulator, "127.0.0.1", 0, None, "127.0.0.1", 0)
            rigs.append(Rig(simulator, url, clock, http, runner))
            return rigs[-1]

        yield start
        for rig in rigs:
            for feed, task in rig.feeds:
                await feed.close()
                assert task.done()
            await rig.runner.cleanup()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text frame any simulator sends, in order (only the simulator sends text here)."""
    frames: list[str] = []
    original = web.WebSocketResponse.send_str

    async def spy(self: web.WebSocketResponse, data: str, compress: int | None = None) -> None:
        frames.append(data)
        await original(self, data, compress)

    monkeypatch.setattr(web.WebSocketResponse, "send_str", spy)
    return frames


async def test_frames_reach_on_frame_byte_for_byte_in_order(
    start_rig: RigFactory, sent: list[str]
) -> None:
    rig = await start_rig(ws_jitter=True)
    feed = rig.feed(enable=None)
    await until(lambda: len(rig.received) == 1)  # legacy firmware: the first frame at once
    await rig.tick(5)
    await until(lambda: len(rig.received) == 6)
    assert rig.received == sent
    assert [frame.encode() for frame in rig.received] == [frame.encode() for frame in sent]
    times = [json.loads(frame)["params"]["time"] for frame in rig.received]
    assert times == [int(WALL) + second for second in range(6)]
    # The merged state: every field of the first frame, the latest power and time.
    assert set(feed.state.fields) == FIELDS
    assert feed.state.time == WALL + 5
    assert feed.state.fields["pv_p"] == json.loads(sent[-1])["params"]["pv_p"]
    assert json.loads(feed.state.frame())["params"].keys() == FIELDS | {"time"}
    described = feed.describe()
    assert described["state"] == "open"
    assert (described["connects"], described["drops"], described["frames"]) == (1, 0, 6)
    assert described["last_frame_age_s"] == 0.0
    assert (described["enables"], described["telemetry_switch"]) == (0, "off")
    await rig.clock.advance(7.0)
    assert feed.describe()["last_frame_age_s"] == 7.0
    assert (rig.stats["ws_connections"], rig.stats["ws_connections_total"]) == (1, 1)
    assert rig.stats["total"] == 0  # the feed sends the PVS no HTTP request of its own


async def test_2025_telemetry_is_switched_on_once_before_connecting(
    start_rig: RigFactory, sent: list[str]
) -> None:
    rig = await start_rig(firmware="2025", ws_jitter=True)
    connections_at_enable: list[int] = []

    async def enable() -> bool:
        connections_at_enable.append(rig.stats["ws_connections_total"])
        return await rig.enable()

    feed = rig.feed(enable)
    await until(lambda: len(rig.received) == 1)  # switched on, so the first frame at once
    assert connections_at_enable == [0]  # the write came before the connection
    await rig.frames_flow(3 * int(SILENCE))  # frames flow: no further write
    assert rig.received == sent
    assert rig.stats["telemetry_enables"] == 1
    assert rig.stats["ws_connections_total"] == 1
    described = feed.describe()
    assert (described["enables"], described["enable_failures"]) == (1, 0)
    assert described["telemetry_switch"] == "on"


async def test_a_silent_feed_is_switched_on_again_while_the_pvs_answers(
    start_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.pvs.feed_switch")
    rig = await start_rig(firmware="2025", ws_jitter=True)
    feed = rig.feed(rig.enable)
    await until(lambda: len(rig.received) == 1)
    assert rig.simulator.feed.telemetry
    rig.simulator.feed.set_telemetry(False)  # someone switched it off: open, and silent
    await rig.tick(3)
    assert len(rig.received) == 1
    await rig.clock.advance(SILENCE - 5)
    await settle()
    assert rig.stats["telemetry_enables"] == 1  # not silent long enough yet
    rig.answering = False  # the PVS stopped answering HTTP: silence is no reason to write
    await rig.clock.advance(3 * SILENCE)
    await settle()
    assert rig.stats["telemetry_enables"] == 1
    assert feed.switch.wanted is None
    rig.answering = True
    await rig.clock.advance(5.0)
    await until(lambda: rig.stats["telemetry_enables"] == 2)
    await until(lambda: feed.describe()["enables"] == 2)
    await rig.tick()
    await until(lambda: len(rig.received) == 2)
    assert rig.stats["ws_connections_total"] == 1  # the same socket throughout
    logged = [r.getMessage() for r in caplog.records if r.name == "bridge.pvs.feed_switch"]
    assert len(logged) == 2
    assert "before connecting" in logged[0] and "feed silent for" in logged[1]


async def test_ws_enable_off_never_writes(start_rig: RigFactory) -> None:
    rig = await start_rig(firmware="2025", ws_jitter=True)
    feed = rig.feed(enable=None)
    await until(lambda: feed.phase == "open")
    for _ in range(5):
        await rig.clock.advance(SILENCE)
    feed.pvs_rebooted()
    await rig.clock.advance(SILENCE)
    await rig.tick(3)
    assert rig.stats["total"] == 0  # not one HTTP request: no login, no write
    assert rig.stats["telemetry_enables"] == 0
    assert rig.received == []
    described = feed.describe()
    assert (described["state"], described["telemetry_switch"]) == ("open", "off")
    assert (described["enables"], described["enable_failures"]) == (0, 0)
    assert rig.stats["ws_connections_total"] == 1


async def test_each_reboot_costs_exactly_one_enable(start_rig: RigFactory) -> None:
    rig = await start_rig(firmware="2025", ws_jitter=True)
    feed = rig.feed(rig.enable, initial=1.0)
    await until(lambda: len(rig.received) == 1)
    assert rig.stats["telemetry_enables"] == 1
    # A power cycle the socket survives; the app's device read reports it.
    rig.simulator.site.reboot()
    feed.pvs_rebooted()
    await rig.tick(2)
    assert len(rig.received) == 1  # the switch is off again
    await rig.clock.advance(SILENCE)  # one write per window: the reboot's comes now
    await until(lambda: rig.stats["telemetry_enables"] == 2)
    await rig.frames_flow(3 * int(SILENCE))
    assert rig.stats["telemetry_enables"] == 2
    # `down` and back: the socket is reset, connects are refused, then it comes back up.
    rig.answering = False  # as the app's health record would say meanwhile
    await rig.fault("down")
    await until(lambda: feed.connect_failures == 1)
    assert (feed.drops, feed.phase) == (1, "backing_off")
    await rig.fault("ok")  # a reboot: the switch is off
    rig.answering = True
    await rig.clock.advance(1.0)  # the backoff passes
    await until(lambda: feed.connects == 2)
    assert rig.stats["telemetry_enables"] == 3  # written before connecting again
    before = len(rig.received)
    await rig.tick()
    await until(lambda: len(rig.received) == before + 1)
    # The app's device read notices the reboot later: the feed already switched it on
    # since that boot (frames came, a write went), so nothing is written.
    await rig.frames_flow(int(SILENCE) + 5)
    feed.pvs_rebooted(uptime=SILENCE + 10)
    assert feed.switch.wanted is None
    await rig.frames_flow(3 * int(SILENCE))
    assert rig.stats["telemetry_enables"] == 3 == 1 + rig.simulator.site.boots
    assert (rig.stats["ws_connections"], rig.stats["ws_connections_total"]) == (1, 2)
    described = feed.describe()
    assert (described["enables"], described["enable_failures"]) == (3, 0)
    assert (described["connects"], described["drops"], described["connect_failures"]) == (2, 1, 1)


async def test_a_dropped_socket_is_reopened_at_most_once_per_10_s(
    start_rig: RigFactory, sent: list[str]
) -> None:
    rig = await start_rig(ws_jitter=True, ws_drop=3.0)
    feed = rig.feed(enable=None)
    await until(lambda: len(rig.received) == 1)
    await rig.tick(3)  # frames at 0, 1 and 2 s; the simulated PVS closes the socket at 3
    await until(lambda: feed.drops == 1)
    assert feed.phase == "connecting"
    await rig.clock.advance(9.0)
    await settle()
    assert rig.stats["ws_connections_total"] == 1  # not yet: 10 s since the last connect
    await rig.clock.advance(1.0)
    await until(lambda: feed.connects == 2 and len(rig.received) == 4)
    assert (feed.connect_failures, feed.backoff.consecutive_failures) == (0, 0)
    assert rig.received == sent
    assert rig.stats["ws_connections_total"] == 2
    await rig.clock.advance(30.0)  # a socket that stays open is not reopened
    await settle()
    assert (rig.stats["ws_connections"], feed.connects, feed.phase) == (1, 2, "open")


async def connect_failures(feed: UpstreamFeed, count: int) -> None:
    """Wait (bounded) until the feed has counted `count` failed connects."""
    await until(lambda: feed.connect_failures == count)


async def test_a_refused_connect_backs_off(start_rig: RigFactory) -> None:
    rig = await start_rig(ws_jitter=True)
    await rig.fault("down")
    feed = rig.feed(enable=None, initial=2.0, maximum=8.0)
    await until(lambda: feed.connect_failures == 1)
    assert feed.phase == "backing_off"
    assert feed.describe()["next_connect_in_s"] == 2.0
    for delay, failures in [(2.0, 2), (4.0, 3), (8.0, 4), (8.0, 5)]:
        await rig.clock.advance(delay - 0.5)
        await settle()
        assert feed.connect_failures == failures - 1  # not before the delay has passed
        await rig.clock.advance(0.5)
        await connect_failures(feed, failures)
    await rig.fault("ok")
    await rig.clock.advance(8.0)
    await until(lambda: feed.phase == "open" and len(rig.received) == 1)
    assert (feed.connects, feed.backoff.consecutive_failures) == (1, 0)
    assert rig.stats["ws_connections_total"] == 1


async def test_frames_make_a_pending_write_moot(start_rig: RigFactory) -> None:
    rig = await start_rig(firmware="2025", ws_jitter=True)
    rig.answering = False  # the PVS does not answer HTTP yet: no write before connecting
    feed = rig.feed(rig.enable)
    await until(lambda: feed.phase == "open")
    assert (feed.switch.wanted,) == ("before connecting",)
    rig.simulator.feed.set_telemetry(True)  # another client switched it on
    await rig.tick()
    await until(lambda: len(rig.received) == 1)
    assert feed.switch.wanted is None
    rig.answering = True
    await rig.frames_flow(2 * int(SILENCE))
    assert rig.stats["telemetry_enables"] == 0 and rig.stats["total"] == 0


async def test_an_enable_the_firmware_lacks_is_never_tried_again(start_rig: RigFactory) -> None:
    rig = await start_rig(firmware="2025", model="PVS5", ws_jitter=True)
    pvs6 = await start_rig(ws_jitter=True)  # a PVS5 has no feed: borrow a legacy PVS6's
    calls: list[bool] = []

    async def enable() -> bool:
        calls.append(await rig.enable())  # the PVS5 answers the write with 400
        return calls[-1]

    feed = pvs6.feed(enable)
    await until(lambda: feed.phase == "open" and calls == [False])
    for _ in range(4):
        await pvs6.clock.advance(SILENCE)
    feed.pvs_rebooted()
    await pvs6.clock.advance(SILENCE)
    await settle()
    assert calls == [False]
    assert feed.describe()["telemetry_switch"] == "unsupported"
    assert rig.stats["telemetry_enables"] == 0


async def test_a_failing_enable_is_retried_once_per_window(start_rig: RigFactory) -> None:
    rig = await start_rig(firmware="2025", ws_jitter=True)
    failing = [True]

    async def enable() -> bool:
        if failing[0]:
            raise aiohttp.ClientConnectionError("the gate refused: backing off")
        return await rig.enable()

    feed = rig.feed(enable)
    await until(lambda: feed.phase == "open" and feed.switch.failures == 1)
    await rig.clock.advance(SILENCE - 5)
    await settle()
    assert feed.switch.failures == 1
    await rig.clock.advance(5.0)
    await until(lambda: feed.switch.failures == 2)
    failing[0] = False
    await rig.clock.advance(SILENCE)
    await until(lambda: rig.stats["telemetry_enables"] == 1)
    await rig.tick()
    await until(lambda: len(rig.received) >= 1)
    described = feed.describe()
    assert (described["enables"], described["enable_failures"]) == (1, 2)


async def test_cancel_and_close_end_the_socket_and_the_session(start_rig: RigFactory) -> None:
    rig = await start_rig(ws_jitter=True)
    feed = rig.feed(enable=None)
    await until(lambda: rig.stats["ws_connections"] == 1)
    _, task = rig.feeds[0]
    task.cancel()
    await asyncio.wait({task})
    await until(lambda: rig.stats["ws_connections"] == 0)
    assert (feed.phase, feed._session, feed._ws) == ("off", None, None)
    second = rig.feed(enable=None)
    await until(lambda: rig.stats["ws_connections"] == 1)
    await second.close()
    assert rig.feeds[1][1].done()
    await until(lambda: rig.stats["ws_connections"] == 0)
    assert (second.phase, second._session) == ("off", None)
    assert rig.stats["ws_connections_total"] == 2


async def test_a_redirect_is_not_followed(start_rig: RigFactory) -> None:
    rig = await start_rig()

    async def redirect(_request: web.Request) -> web.Response:
        # Plain http (aiohttp refuses a redirect to ws:// anyway): followed, the upgrade
        # request would reach the simulator's feed.
        raise web.HTTPFound(rig.simulator.feed_url.replace("ws://", "http://"))

    app = web.Application()
    app.router.add_get("/", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        feed = rig.feed(enable=None, url=f"ws://127.0.0.1:{port}/")
        await until(lambda: feed.connect_failures == 1)
        assert (feed.phase, feed.connects) == ("backing_off", 0)
        assert rig.stats["ws_connections_total"] == 0
        await feed.close()
    finally:
        await runner.cleanup()


async def test_an_on_frame_error_does_not_cost_the_socket(start_rig: RigFactory) -> None:
    rig = await start_rig(ws_jitter=True)
    seen: list[str] = []

    def on_frame(text: str) -> None:
        seen.append(text)
        raise RuntimeError("a relay bug")

    feed = UpstreamFeed(
        rig.simulator.feed_url,
        rig.clock,
        Backoff(rig.clock, initial=1.0, maximum=2.0),
        on_frame,
        enable=None,
        pvs_answering=lambda: True,
    )
    rig.feeds.append((feed, asyncio.create_task(feed.run())))
    await until(lambda: len(seen) == 1)
    await rig.tick(2)
    await until(lambda: len(seen) == 3)
    assert (feed.phase, feed.connects, feed.drops, feed.frames) == ("open", 1, 0, 3)


async def test_no_url_means_no_feed() -> None:
    clock = FakeClock()
    feed = UpstreamFeed(
        None,
        clock,
        Backoff(clock, initial=1.0, maximum=2.0),
        lambda _text: None,
        enable=None,
        pvs_answering=lambda: True,
    )
    await asyncio.wait_for(feed.run(), timeout=5)
    described = feed.describe()
    assert (described["state"], described["url"], described["connects"]) == ("off", None, 0)
    assert described["last_frame_age_s"] is None


@pytest.mark.parametrize(
    ("ws_url", "upstream", "expected"),
    [
        ("", "https://192.168.1.2", "ws://192.168.1.2:9002/"),
        ("", "http://172.27.153.1:80/", "ws://172.27.153.1:9002/"),
        ("", "http://[fd00::2]", "ws://[fd00::2]:9002/"),
        ("off", "http://172.27.153.1", None),
        (" OFF ", "http://172.27.153.1", None),
        ("wss://pvs.lan:9443/feed", "http://172.27.153.1", "wss://pvs.lan:9443/feed"),
    ],
)
def test_the_feed_url(ws_url: str, upstream: str, expected: str | None) -> None:
    assert resolve_url(ws_url, upstream) == expected


def test_the_url_shown_holds_no_secret() -> None:
    assert shown_url("wss://user:secret@pvs.lan:9002/?token=x") == "wss://pvs.lan:9002/"
    assert shown_url(None) is None
