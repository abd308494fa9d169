"""The live feed for clients (bridge/web/live.py): LiveHub, its WebSocket and SSE handlers,
over real loopback sockets with aiohttp's own client.

Nothing here asserts on wall-clock time: every wait is a bounded poll of a count or a
state, or a receive with a timeout that only keeps a broken test from hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from bridge.clock import FakeClock
from bridge.config import ServerConfig
from bridge.site.live import parse_frame
from bridge.site.model import LiveTotals
from bridge.web.cors import CorsPolicy
from bridge.web.guard import Guards, Lifecycle
from bridge.web.live import LiveHub, add_live_route, feed_app
from bridge.web.runner import make_runner
from tests.support import until

ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)
SILENCE = 90.0


def frame(n: int, **extra: object) -> str:
    """A feed frame in a layout of its own (spaces, time in ms), to check bytes are kept."""
    params = {"time": 1_700_000_000_000 + n * 1000, "pv_p": n / 10, **extra}
    return json.dumps({"notification": "power", "params": params})


@dataclass
class Live:
    """A hub served as the feed app (plus /live) on loopback, and a client session."""

    hub: LiveHub
    clock: FakeClock
    lifecycle: Lifecycle
    runner: web.AppRunner
    base: str
    session: aiohttp.ClientSession
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    async def connect(self, **options: Any) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket client, once the hub relays to it."""
        before = self.hub.counts.clients_total
        ws = await self.session.ws_connect(self.url("/"), **options)
        await until(lambda: self.hub.counts.clients_total > before)
        return ws

    def collect(self, ws: aiohttp.ClientWebSocketResponse) -> list[str]:
        """Every text frame `ws` receives from now on, read by a task of its own."""
        received: list[str] = []

        async def read() -> None:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    received.append(message.data)

        self.readers.append(asyncio.create_task(read()))
        return received


@pytest.fixture
async def start_live() -> AsyncIterator[Callable[..., Any]]:
    """Start hubs on free loopback ports, served by the production runner (which, unlike
    TestServer, does not cancel a handler whose client left): `await start_live(...)`."""
    started: list[Live] = []
    # No connection limit: every WebSocket holds a connection for as long as it lasts.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def start(**options: Any) -> Live:
            clock = FakeClock()
            options.setdefault("silence", SILENCE)
            options.setdefault("sse_check", 0.01)  # real time: only how soon a leaver is seen
            hub = LiveHub(clock, **options)
            lifecycle = Lifecycle()
            guards = Guards(lifecycle, 4096)
            app = feed_app(hub, guards)
            app.on_shutdown.insert(0, lifecycle.begin_shutdown)  # as the main app has it
            add_live_route(app, hub, guards, CorsPolicy(frozenset({"*"})))
            runner = make_runner(app, ServerConfig())
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            started.append(live := Live(hub, clock, lifecycle, runner, base, session))
            return live

        yield start
        for live in started:
            for reader in live.readers:
                reader.cancel()
            await live.runner.cleanup()


async def text_frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[str]:
    """Exactly `count` text frames, read in order."""
    received = []
    for _ in range(count):
        message = await ws.receive(timeout=5)
        assert message.type is WSMsgType.TEXT, message
        received.append(message.data)
    return received


async def ended(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The next message that is not a text frame, which must say the connection ended."""
    while (message := await ws.receive(timeout=5)).type is WSMsgType.TEXT:
        pass
    assert message.type in ENDED, message
    return message


async def events(response: aiohttp.ClientResponse, count: int) -> list[bytes]:
    """Exactly `count` Server-Sent Events, as bytes."""
    return [await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5) for _ in range(count)]


async def test_first_the_full_frame_then_every_frame_in_order_byte_for_byte(
    start_live: Callable[..., Any],
) -> None:
    live: Live = await start_live()
    live.hub.publish(frame(1, net_p=-2.5))
    live.hub.publish(frame(2, soc=0.5))
    ws = await live.connect()
    (first,) = await text_frames(ws, 1)
    assert first == live.hub.state.frame()
    assert parse_frame(first) == {"time": 1_700_000_002.0, "pv_p": 0.2, "net_p": -2.5, "soc": 0.5}
    published = [frame(n) for n in range(3, 53)]
    for text in published:
        live.hub.publish(text)
    assert await text_frames(ws, 50) == published
    await ws.close()


async def test_nothing_known_yet_means_no_full_frame(start_live: Callable[..., Any]) -> None:
    live: Live = await start_live()
    ws = await live.connect()
    live.hub.publish(frame(1))
    assert await text_frames(ws, 1) == [frame(1)]
    await ws.close()


async def test_every_frame_is_relayed_even_those_it_does_not_understand(
    start_live: Callable[..., Any],
) -> None:
    live: Live = await start_live()
    ws = await live.connect()
    others = ['{"notification":"other","params":{}}', "not json", frame(1)]
    for text in others:
        live.hub.publish(text)
    assert await text_frames(ws, 3) == others
    assert live.hub.state.fields == {"pv_p": 0.1}
    await ws.close()


async def test_200_clients_each_receive_every_frame(start_live: Callable[..., Any]) -> None:
    live: Live = await start_live()
    clients = [await live.connect() for _ in range(200)]
    received = [live.collect(ws) for ws in clients]
    published = [frame(n) for n in range(100)]
    for start in range(0, 100, 10):
        for text in published[start : start + 10]:
            live.hub.publish(text)
        batch_end = start + 10
        await until(lambda: all(len(got) == batch_end for got in received))  # noqa: B023
    assert all(got == published for got in received)
    assert live.hub.clients == 200
    assert live.hub.counts.dropped_slow == 0
    for ws in clients:
        await ws.close()
    await until(lambda: live.hub.clients == 0)


async def test_a_client_that_stops_reading_is_dropped_and_the_others_get_everything(
    start_live: Callable[..., Any],
) -> None:
    live: Live = await start_live()
    stalled = await live.connect()  # never read until it is dropped
    reader = await live.connect()
    received = live.collect(reader)
    pad = "x" * 4000  # big frames fill the socket buffers quickly: a few MB on loopback
    published: list[str] = []
    while live.hub.counts.dropped_slow == 0:
        assert len(published) < 5000, "the stalled client was never dropped"
        for _ in range(3):  # 3 frames fit the 16 KiB queue of a client that reads
            published.append(frame(len(published), pad=pad))
            live.hub.publish(published[-1])
        await until(lambda: len(received) == len(published), tries=100_000, pause=0)
    live.hub.publish(frame(-1))
    published.append(frame(-1))
    await until(lambda: len(received) == len(published))
    assert received == published
    assert live.hub.counts.dropped_slow == 1
    assert live.hub.clients == 1
    # The stalled client got what its buffers held, in order, then the end.
    kept = []
    while (message := await stalled.receive(timeout=5)).type is WSMsgType.TEXT:
        kept.append(message.data)
    assert message.type in ENDED
    assert kept == published[: len(kept)]
    assert 0 < len(kept) < len(published)
    await reader.close()


async def test_over_max_clients_is_a_503(start_live: Callable[..., Any]) -> None:
    live: Live = await start_live(max_clients=2)
    first, second = await live.connect(), await live.connect()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await live.session.ws_connect(live.url("/"))
    assert refused.value.status == 503
    async with live.session.get(live.url("/live")) as response:  # SSE counts too
        assert response.status == 503
        assert (await response.json())["error"] == "too_many_clients"
        assert response.headers["Retry-After"] == "30"
    assert live.hub.counts.refused_full == 2
    await first.close()
    await until(lambda: live.hub.clients == 1)
    third = await live.connect()  # a place came free
    live.hub.publish(frame(1))
    assert await text_frames(third, 1) == await text_frames(second, 1) == [frame(1)]
    assert live.hub.describe()["clients"] == 2
    for ws in (second, third):
        await ws.close()


async def test_a_large_client_frame_closes_only_that_client(
    start_live: Callable[..., Any],
) -> None:
    live: Live = await start_live()
    talker, big, quiet = await live.connect(), await live.connect(), await live.connect()
    await talker.send_str("x" * 4096)  # ignored, as every client frame up to 4 KiB
    await talker.send_bytes(b"\x00" * 100)
    await big.send_str("x" * 4097)
    message = await ended(big)
    assert message.type is WSMsgType.CLOSE and message.data == WSCloseCode.MESSAGE_TOO_BIG
    await until(lambda: live.hub.clients == 2)
    live.hub.publish(frame(1))
    assert await text_frames(talker, 1) == await text_frames(quiet, 1) == [frame(1)]
    for ws in (talker, quiet):
        await ws.close()


async def test_ping_is_answered_with_pong(start_live: Callable[..., Any]) -> None:
    live: Live = await start_live()
    ws = await live.connect(autoping=False)
    await ws.ping(b"are you there")
    message = await ws.receive(timeout=5)
    assert message.type is WSMsgType.PONG and message.data == b"are you there"
    await ws.close()


async def test_sse_gets_the_same_frames(start_live: Callable[..., Any]) -> None:
    live: Live = await start_live()
    live.hub.publish(frame(1, net_p=1.5))
    ws = await live.connect()
    async with live.session.get(
        live.url("/live"), headers={"Origin": "http://dash.example"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        published = [frame(n) for n in range(2, 12)] + ["two\nlines"]
        await until(lambda: live.hub.clients == 2)
        for text in published:
            live.hub.publish(text)
        got = await events(response, 12)
        full, *rest = await text_frames(ws, 12)
        assert got[0] == f"data: {full}\n\n".encode()
        assert got[1:-1] == [f"data: {text}\n\n".encode() for text in rest[:-1]]
        assert got[-1] == b"data: two\ndata: lines\n\n"
    await until(lambda: live.hub.clients == 1)  # the SSE client left
    await ws.close()


async def test_derived_frames_carry_only_changed_fields_plus_time(
    start_live: Callable[..., Any],
) -> None:
    live: Live = await start_live()
    hub = live.hub
    assert (hub.source, hub.age) == ("none", None)
    ws = await live.connect()
    assert hub.publish_derived(LiveTotals(pv_p=3.0, net_p=-1.0, soc=None), 1_700_000_000.0)
    live.clock.jump(5)
    assert hub.publish_derived(LiveTotals(pv_p=3.0, net_p=-0.5, pv_en=10.0), 1_700_000_005.0)
    assert hub.publish_derived(LiveTotals(pv_p=3.0, net_p=-0.5, pv_en=10.0), 1_700_000_010.0)
    first, second, third = [json.loads(text) for text in await text_frames(ws, 3)]
    assert first["params"] == {"time": 1_700_000_000.0, "pv_p": 3.0, "net_p": -1.0}
    assert second["params"] == {"time": 1_700_000_005.0, "net_p": -0.5, "pv_en": 10.0}
    assert third["params"] == {"time": 1_700_000_010.0}
    assert (hub.source, hub.age) == ("derived", 0.0)
    hub.publish(frame(1))  # the PVS's feed is back: derived frames wait
    assert hub.source == "feed"
    assert not hub.publish_derived(LiveTotals(pv_p=9.0), 1_700_000_020.0)
    live.clock.jump(SILENCE + 1)
    assert hub.source == "derived"
    assert hub.describe()["last_frame_age_s"] == SILENCE + 1
    assert hub.publish_derived(LiveTotals(pv_p=9.0), 1_700_000_020.0)
    assert await text_frames(ws, 2) == [
        frame(1),
        '{"notification":"power","params":{"time":1700000020.0,"pv_p":9.0}}',
    ]
    assert hub.counts.frames_relayed == 5
    await ws.close()


async def test_close_ends_every_client_with_going_away(start_live: Callable[..., Any]) -> None:
    live: Live = await start_live()
    live.hub.publish(frame(1))
    clients = [await live.connect() for _ in range(3)]
    async with live.session.get(live.url("/live")) as response:
        await events(response, 1)
        await until(lambda: live.hub.clients == 4)
        await live.hub.close()
        assert await asyncio.wait_for(response.content.read(), 5) == b""
    for ws in clients:
        message = await ended(ws)
        assert message.type is WSMsgType.CLOSE
        assert (message.data, message.extra) == (WSCloseCode.GOING_AWAY, "going away")
    assert live.hub.clients == 0
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await live.session.ws_connect(live.url("/"))
    assert refused.value.status == 503
    live.hub.publish(frame(2))  # publishing after close is harmless
    assert live.hub.state.fields["pv_p"] == 0.2


async def test_server_shutdown_closes_clients_cleanly(start_live: Callable[..., Any]) -> None:
    # The lifecycle's begin_shutdown runs first (see the fixture): open streams are the
    # hub's to end, never answered with a 503 after their 101 or their event stream.
    live: Live = await start_live()
    ws = await live.connect()
    live.hub.publish(frame(1))
    await text_frames(ws, 1)
    async with live.session.get(live.url("/live")) as response:
        await events(response, 1)
        closing = asyncio.create_task(live.runner.cleanup())
        message = await ended(ws)
        assert (message.type, message.data) == (WSMsgType.CLOSE, WSCloseCode.GOING_AWAY)
        assert await asyncio.wait_for(response.content.read(), 5) == b""
    await asyncio.wait_for(closing, 10)
    assert live.lifecycle.stopping.is_set() and live.hub.clients == 0


async def test_the_feed_listener_serves_only_the_websocket(
    start_live: Callable[..., Any],
) -> None:
    live: Live = await start_live()
    async with live.session.get(live.url("/")) as response:
        assert response.status == 426
        assert (await response.json())["error"] == "websocket_expected"
    async with live.session.get(live.url("/cgi-bin/dl_cgi")) as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
    async with live.session.head(live.url("/live")) as response:
        assert response.status == 200
    assert live.hub.counts.clients_total == 0


async def test_describe_counts(start_live: Callable[..., Any]) -> None:
    live: Live = await start_live(max_clients=1)
    ws = await live.connect()
    with contextlib.suppress(aiohttp.WSServerHandshakeError):
        await live.session.ws_connect(live.url("/"))
    live.hub.publish(frame(1))
    await text_frames(ws, 1)
    assert live.hub.describe() == {
        "source": "feed",
        "last_frame_age_s": 0.0,
        "clients": 1,
        "max_clients": 1,
        "clients_total": 1,
        "frames_relayed": 1,
        "dropped_slow": 0,
        "refused_full": 1,
    }
    await ws.close()


def test_publish_without_clients_or_event_loop_keeps_the_state() -> None:
    hub = LiveHub(FakeClock())
    hub.publish(frame(1, soc=0.5))
    hub.publish(frame(2))
    assert hub.state.frame() == (
        '{"notification":"power","params":{"time":1700000002.0,"pv_p":0.2,"soc":0.5}}'
    )
    assert hub.describe()["frames_relayed"] == 2
