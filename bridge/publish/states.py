"""What the bridge publishes besides discovery: one JSON state per device, the site's live
totals, and each device's availability. Pure, apart from `Lifetime`'s memory of the
counters already published (and its one log line per counter held back)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from bridge.publish.discovery import OFFLINE, ONLINE, Message, Topics
from bridge.publish.sensors import LIVE_INCREASING, increasing
from bridge.site.live import LiveState
from bridge.site.model import Device
from bridge.site.timefmt import format_iso

log = logging.getLogger(__name__)

MAX_COUNTERS = 4096  # (device, field) pairs remembered; a site has a few hundred at most


class Lifetime:
    """Lifetime counters never go backwards on MQTT: a lower reading than the one last
    published (a PVS glitch, a meter gone and an inverter sum in its place) is held back,
    the previous value published instead, counted, and logged once per device and field."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}
        self._logged: set[tuple[str, str]] = set()
        self.held_back = 0

    def hold(self, serial: str, name: str, value: float) -> float:
        """The value to publish for this counter now."""
        key = (serial, name)
        last = self._last.get(key)
        if last is not None and value < last:
            self.held_back += 1
            if key not in self._logged and len(self._logged) < MAX_COUNTERS:
                self._logged.add(key)
                log.warning(
                    "MQTT: %s of %s went down from %s to %s; the previous value is kept "
                    "(logged once per counter)",
                    name,
                    serial,
                    last,
                    value,
                )
            return last
        if key in self._last or len(self._last) < MAX_COUNTERS:
            self._last[key] = value
        return value


def device_state(device: Device, taken_at: float, lifetime: Lifetime) -> dict[str, object]:
    """A device's state: who it is, when it was read and measured, then every reading."""
    state: dict[str, object] = {
        "serial": device.serial,
        "kind": device.kind.value,
        "model": device.model,
        "state": device.state,
        "measured_at": None if device.measured_at is None else format_iso(device.measured_at),
        "taken_at": format_iso(taken_at),
    }
    for name, reading in device.readings.items():
        value = reading.value
        if increasing(device, name):
            value = lifetime.hold(device.serial, name, value)
        state.setdefault(name, value)
    return state


def state_message(topics: Topics, device: Device, taken_at: float, lifetime: Lifetime) -> Message:
    """The retained state message of one device."""
    return Message(topics.state(device.serial), dumps(device_state(device, taken_at, lifetime)))


def live_state(serial: str, state: LiveState, lifetime: Lifetime) -> dict[str, object]:
    """The site's live totals (every field of the merged `power` frames) with `time`."""
    values: dict[str, object] = {"time": state.time}
    for name, given in state.fields.items():
        number = isinstance(given, int | float) and not isinstance(given, bool)
        if name in LIVE_INCREASING and number and isinstance(given, int | float):
            values[name] = lifetime.hold(serial, name, float(given))
        else:
            values[name] = given
    return values


def live_message(topics: Topics, serial: str, state: LiveState, lifetime: Lifetime) -> Message:
    """The live totals on the PVS's live topic (retained: a new subscriber sees them)."""
    return Message(topics.live(serial), dumps(live_state(serial, state, lifetime)))


def availability(
    topics: Topics, seen: Mapping[str, float], now: float, max_stale: float
) -> list[Message]:
    """Each device `online` while the latest read that had it is at most `max_stale` old."""
    return [
        Message(topics.availability(serial), ONLINE if now - at <= max_stale else OFFLINE)
        for serial, at in seen.items()
    ]


def dumps(document: Mapping[str, object]) -> str:
    """Compact JSON."""
    return json.dumps(document, separators=(",", ":"))
