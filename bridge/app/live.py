"""The live data's wiring: the hub clients connect to, the one upstream feed that fills
it, the reboot watch that re-arms the feed, frames derived from each device read
whenever the PVS's own feed is silent or absent, and the minute history that both feed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridge.cache.history import History
from bridge.clock import Clock
from bridge.config import Config
from bridge.publish import MqttPublisher
from bridge.pvs.backoff import Backoff
from bridge.pvs.client import Upstream
from bridge.pvs.devices import DeviceRead, DeviceReader
from bridge.pvs.feed import UpstreamFeed
from bridge.pvs.feed_connect import resolve_url
from bridge.pvs.firmware import FirmwareParts
from bridge.pvs.reboots import RebootWatch
from bridge.web.live import LiveHub


@dataclass(frozen=True)
class Live:
    """The live-data parts, built together."""

    hub: LiveHub
    feed: UpstreamFeed
    reboots: RebootWatch
    devices: DeviceReader
    history: History
    mqtt: MqttPublisher | None = None  # with mqtt.url

    def describe(self) -> dict[str, object]:
        """/health's `live` section: where live data comes from, its age, the feed."""
        return {**self.hub.describe(), "upstream_feed": self.feed.describe()}

    def sections(self) -> dict[str, Callable[[], dict[str, object]]]:
        """/health's sections of these parts: `live`, `pvs` (reboots) and `mqtt`."""
        found = {"live": self.describe, "pvs": self.reboots.describe, "mqtt": _mqtt_off}
        if self.mqtt is not None:
            found["mqtt"] = self.mqtt.describe
        return found


def build_live(config: Config, clock: Clock, upstream: Upstream, parts: FirmwareParts) -> Live:
    """The hub, the feed and the device reader whose reads re-arm and stand in for it."""
    up = config.upstream
    hub = LiveHub(clock, max_clients=config.server.ws_max_clients, silence=up.ws_silence)
    history = History()

    def relay(text: str) -> None:  # each PVS feed frame: to the clients, then the history
        hub.publish(text)
        history.frame(hub.state)

    def pvs_answering() -> bool:
        # Not known to be failing: a PVS that is down is not asked to switch anything on.
        return upstream.backoff.consecutive_failures == 0

    feed = UpstreamFeed(
        resolve_url(up.ws_url, upstream.base_url),
        clock,
        Backoff(clock, initial=up.backoff_initial, maximum=up.backoff_max),
        relay,
        enable=parts.enable_telemetry if up.ws_enable else None,
        pvs_answering=pvs_answering,
        silence=up.ws_silence,
        connect_timeout=up.connect_timeout,
    )
    reboots = RebootWatch(clock, [feed.pvs_rebooted])

    def derive(found: DeviceRead) -> None:
        # The PVS's own frames win while they come (the hub skips these then).
        if found.snapshot is not None:
            hub.publish_derived(found.snapshot.totals, found.snapshot.taken_at)

    mqtt = _publisher(config, clock, hub)
    also = [] if mqtt is None else [mqtt.device_read]
    devices = DeviceReader([reboots.read, derive, history.read, *also])
    return Live(hub, feed, reboots, devices, history, mqtt)


def _mqtt_off() -> dict[str, object]:
    return {"state": "off"}


def _publisher(config: Config, clock: Clock, hub: LiveHub) -> MqttPublisher | None:
    """The MQTT publisher (mqtt.url set): each good read, and the hub's merged live state."""
    if not config.mqtt.url:
        return None
    cache = config.cache
    return MqttPublisher(
        config.mqtt, clock, lambda: hub.state, max_stale=cache.max_stale, refresh=cache.refresh
    )
