"""MQTT as a long-lived task: the site published to a broker, with Home Assistant discovery.

aiomqtt's documented reconnect loop: `async with Client(...)` inside a loop, `MqttError`
caught, a capped exponential wait on the injected clock before the next try (`Backoff`).
The last will (`offline`, retained, on `<base>/status`) is set at each connect and
`online` published once connected; a clean stop publishes `offline` itself. While
connected, one task each: new reads (discovery, states, availability), the live totals and
availability every `live_interval`, Home Assistant's birth message (discovery again), and
`keep_fresh` (interest in the device list) every refresh interval so the data stays fresh
with no HTTP client. Nothing here ever blocks or fails the HTTP side: the device-read listener
only keeps the snapshot, and every broker problem ends in the reconnect loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from aiomqtt import Client, MqttError, Will

from bridge.clock import Clock
from bridge.config import MqttConfig
from bridge.publish.broker import Broker
from bridge.publish.discovery import OFFLINE, ONLINE, Message, Topics, discovery
from bridge.publish.states import Lifetime, availability, live_message, state_message
from bridge.pvs.backoff import Backoff
from bridge.pvs.devices import DeviceRead
from bridge.pvs.errors import UpstreamError
from bridge.site.live import LiveState
from bridge.site.model import Snapshot

log = logging.getLogger(__name__)

QOS = 1
RECONNECT_INITIAL = 1.0  # seconds before the first reconnect; doubling up to the maximum
RECONNECT_MAX = 60.0
MAX_DEVICES = 1024  # serials whose availability is kept (a site has a few dozen)
KeepFresh = Callable[[], Awaitable[object]]


class MqttPublisher:
    """Publishes each good device read and the live totals to one broker, for as long as
    `run()` runs; `device_read` is the DeviceReader listener, `describe()` /health's."""

    def __init__(
        self,
        settings: MqttConfig,
        clock: Clock,
        live: Callable[[], LiveState],
        *,
        max_stale: float,
        refresh: float,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.broker = Broker.from_url(settings.url)
        self.topics = Topics(settings.base_topic, settings.discovery_prefix)
        self.clock, self._live = clock, live
        self.live_interval = settings.live_interval
        self.max_stale, self.refresh = max_stale, refresh
        self.backoff = Backoff(
            clock, initial=RECONNECT_INITIAL, maximum=RECONNECT_MAX, jitter=jitter
        )
        self.lifetime = Lifetime()
        self.snapshot: Snapshot | None = None
        self._seen: dict[str, float] = {}  # serial -> monotonic time of the last read with it
        self._news = asyncio.Event()
        self._stopping = asyncio.Event()
        self._sent: dict[str, str] = {}  # retained payloads sent on this connection
        self._live_sent: tuple[LiveState, float] | None = None  # and when (monotonic)
        self.state, self.last_error = "starting", ""
        self._connected_at: float | None = None
        self.published = self.connections = self.failures = 0

    def device_read(self, found: DeviceRead) -> None:
        """DeviceReader listener: keep the newest snapshot for the publishing task."""
        if found.snapshot is None:
            return
        self.snapshot, now = found.snapshot, self.clock.monotonic()
        for device in (device for device in found.snapshot.devices if device.serial):
            self._seen.pop(device.serial, None)
            self._seen[device.serial] = now  # most recent last, so the oldest go first
        while len(self._seen) > MAX_DEVICES:
            del self._seen[next(iter(self._seen))]
        self._news.set()

    def describe(self) -> dict[str, object]:
        """/health's `mqtt` section."""
        return {
            "state": self.state,
            "broker": self.broker.display,
            "messages_published": self.published,
            "connections": self.connections,
            "reconnects": max(0, self.connections - 1),
            "failed_connects": self.failures,
            "last_error": self.last_error or None,
            "held_back_readings": self.lifetime.held_back,
        }

    def stop(self) -> None:
        """End `run()`: `offline` published and a clean disconnect (or no wait, if waiting)."""
        self._stopping.set()

    async def run(self, keep_fresh: KeepFresh) -> None:
        """Connect, publish, and reconnect after any broker problem, until `stop()`."""
        while not self._stopping.is_set():
            try:
                await self._connection(keep_fresh)
            except MqttError as error:
                self._failed(str(error))
            except Exception as error:  # a bug must not end the publishing for good
                log.exception("MQTT: publishing to %s failed", self.broker.display)
                self._failed(f"{type(error).__name__}: {error}")
            if not self._stopping.is_set():
                await first(self.clock.sleep(self._retry_delay()), self._stopping.wait())
        self.state = "stopped"

    def _retry_delay(self) -> float:
        """The wait before the next connect: from the start after a connection that lasted,
        longer each time after failed connects or connections dropped at once (a broker
        that keeps kicking the bridge out)."""
        since = self._connected_at
        if since is not None and self.clock.monotonic() - since >= RECONNECT_MAX:
            self.backoff.succeeded()
        self._connected_at = None
        return self.backoff.failed()

    def _failed(self, error: str) -> None:
        was_connected = self.state == "connected"
        self.state, self.failures = "disconnected", self.failures + (not was_connected)
        level = logging.WARNING if error != self.last_error or was_connected else logging.DEBUG
        log.log(level, "MQTT: %s: %s; trying again with backoff", self.broker.display, error)
        self.last_error = error

    def _client(self) -> Client:
        broker = self.broker
        return Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            will=Will(self.topics.status, OFFLINE, qos=QOS, retain=True),
            tls_context=broker.tls_context(),
        )

    async def _connection(self, keep_fresh: KeepFresh) -> None:
        self.state = "connecting"
        async with self._client() as client:
            self.connections += 1
            self._connected_at = self.clock.monotonic()
            self.state, self._sent, self._live_sent = "connected", {}, None
            log.info("MQTT: connected to %s", self.broker.display)
            await self._send(client, Message(self.topics.status, ONLINE))
            await client.subscribe(self.topics.home_assistant_status)
            self._news.set()
            if not self._stopping.is_set():
                await first(
                    self._listen(client),
                    self._push(client),
                    self._tick(client),
                    self._keep_fresh(keep_fresh),
                    self._stopping.wait(),
                )
            await self._send(client, Message(self.topics.status, OFFLINE))

    async def _send(self, client: Client, message: Message) -> None:
        await client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)
        self.published += 1

    async def _send_changed(self, client: Client, messages: Iterable[Message]) -> None:
        """Retained messages, each only when it differs from what this connection sent."""
        for message in messages:
            if self._sent.get(message.topic) != message.payload:
                await self._send(client, message)
                self._sent[message.topic] = message.payload

    async def _listen(self, client: Client) -> None:
        """Home Assistant's birth message: it restarted, send discovery again. Ends with an
        MqttError when the connection drops."""
        async for message in client.messages:
            if message.payload in (ONLINE, ONLINE.encode()):
                self._sent.clear()
                self._news.set()

    async def _push(self, client: Client) -> None:
        while True:
            await self._news.wait()
            self._news.clear()
            snapshot = self.snapshot
            if snapshot is None:
                continue
            await self._send_changed(client, discovery(snapshot, self.topics))
            for device in (device for device in snapshot.devices if device.serial):
                message = state_message(self.topics, device, snapshot.taken_at, self.lifetime)
                await self._send(client, message)
            await self._availability(client)
            await self._publish_live(client)

    async def _tick(self, client: Client) -> None:
        while True:
            await self._publish_live(client)
            await self._availability(client)
            await self.clock.sleep(self.live_interval)

    async def _publish_live(self, client: Client) -> None:
        """The live totals when they changed, at most once per `live_interval`."""
        state, snapshot, now = self._live(), self.snapshot, self.clock.monotonic()
        if snapshot is None or snapshot.supervisor is None or not state.fields:
            return
        if self._live_sent is not None:
            sent, at = self._live_sent
            if state == sent or now - at < self.live_interval:
                return
        serial = snapshot.supervisor.serial
        await self._send(client, live_message(self.topics, serial, state, self.lifetime))
        self._live_sent = (state, now)

    async def _availability(self, client: Client) -> None:
        now = self.clock.monotonic()
        await self._send_changed(client, availability(self.topics, self._seen, now, self.max_stale))

    async def _keep_fresh(self, keep_fresh: KeepFresh) -> None:
        """Interest in the device list each refresh interval: with nobody polling over
        HTTP, refresh-ahead still runs (it ends once no client asked for a while)."""
        while True:
            with contextlib.suppress(UpstreamError):  # counted and shown by the cache
                await keep_fresh()
            await self.clock.sleep(self.refresh)


async def first(*coroutines: Coroutine[Any, Any, object]) -> None:
    """Run these until the first one ends; cancel the rest; raise its error, if any."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
