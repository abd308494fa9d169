"""Home Assistant MQTT discovery for a site snapshot: pure functions, no broker needed.

One Home Assistant device per PVS, inverter, meter and battery (identified by serial,
each but the PVS `via_device` the PVS), one sensor per reading Home Assistant has a class
for, and the PVS's site totals (from the live topic). Lifetime energies are
`total_increasing` so that the Energy dashboard takes production (the production meter,
the inverters, the PVS's solar energy), consumption (the PVS's home energy), grid import
and export (the consumption meter) as they are; a net energy is `total`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from bridge import __version__
from bridge.publish.sensors import LIVE_SENSORS, Sensor, role, sensor_for
from bridge.site.model import LIVE_TOTALS, Device, Kind, LiveTotals, Snapshot

MANUFACTURER = "SunPower"
ORIGIN = {"name": "pvs-bridge", "sw_version": __version__}
ONLINE, OFFLINE = "online", "offline"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Message:
    """One MQTT message to publish (retained unless said otherwise)."""

    topic: str
    payload: str
    retain: bool = True


def safe(text: str) -> str:
    """A topic level or id made of letters, digits, `_` and `-` only."""
    return _UNSAFE.sub("_", text) or "_"


@dataclass(frozen=True)
class Topics:
    """Every topic the bridge publishes to, from `mqtt.base_topic` and `discovery_prefix`."""

    base: str
    prefix: str

    @property
    def status(self) -> str:
        """The bridge's own availability (the last will says `offline` here)."""
        return f"{self.base}/status"

    @property
    def home_assistant_status(self) -> str:
        """Where Home Assistant says `online` when it starts (discovery is sent again)."""
        return f"{self.prefix}/status"

    def state(self, serial: str) -> str:
        return f"{self.base}/{safe(serial)}/state"

    def availability(self, serial: str) -> str:
        return f"{self.base}/{safe(serial)}/availability"

    def live(self, serial: str) -> str:
        return f"{self.base}/{safe(serial)}/live"

    def config(self, serial: str, object_id: str) -> str:
        return f"{self.prefix}/sensor/{safe(serial)}/{safe(object_id)}/config"


# By unit (figures.unit_of): (device class, state class, unit Home Assistant expects).
def identifier(serial: str) -> str:
    """A device's identifier in Home Assistant's device registry."""
    return f"sunpower_{serial}"


def device_name(device: Device) -> str:
    """`PVS6 ZT...`, `Inverter E00...`, `Production meter PVS6M...p`, `Battery ...`."""
    if device.kind is Kind.SUPERVISOR:
        return f"{device.model.removeprefix('PV Supervisor ') or 'PVS'} {device.serial}"
    title = {"production": "Production meter", "consumption": "Consumption meter"}
    kind = role(device)
    return f"{title.get(kind, kind.capitalize())} {device.serial}"


def device_info(device: Device, pvs_serial: str | None) -> dict[str, object]:
    """The discovery payload's `device`: identifiers, maker, model, versions, parent."""
    info: dict[str, object] = {
        "identifiers": [identifier(device.serial)],
        "name": device_name(device),
        "manufacturer": MANUFACTURER,
        "model": device.model or role(device),
        "serial_number": device.serial,
    }
    for attribute, key in (("SWVER", "sw_version"), ("HWVER", "hw_version")):
        value = device.attribute(attribute)
        if value not in (None, ""):
            info[key] = str(value)
    if pvs_serial is not None and device.serial != pvs_serial:
        info["via_device"] = identifier(pvs_serial)
    return info


def template(name: str, scale: float) -> str:
    """The value template reading one field of a JSON state."""
    value = f"value_json[{json.dumps(name)}]"
    return f"{{{{ {value} }}}}" if scale == 1.0 else f"{{{{ ({value} * {scale:g}) | round(2) }}}}"


def config_message(
    topics: Topics,
    serial: str,
    object_id: str,
    sensor: Sensor,
    info: dict[str, object],
    *,
    state_topic: str,
) -> Message:
    """One sensor's discovery message."""
    config: dict[str, object] = {
        "name": sensor.name,
        "unique_id": f"pvs_bridge_{safe(serial)}_{safe(object_id)}",
        "state_topic": state_topic,
        "value_template": template(object_id, sensor.scale),
        "state_class": sensor.state_class,
        "availability": [{"topic": topics.status}, {"topic": topics.availability(serial)}],
        "availability_mode": "all",
        "device": info,
        "origin": ORIGIN,
    }
    if sensor.device_class is not None:
        config["device_class"] = sensor.device_class
    if sensor.unit is not None:
        config["unit_of_measurement"] = sensor.unit
    if sensor.diagnostic:
        config["entity_category"] = "diagnostic"
    return Message(topics.config(serial, object_id), json.dumps(config, separators=(",", ":")))


def live_fields(totals: LiveTotals) -> list[str]:
    """The site totals this site has (the battery's only with a battery)."""
    return [name for name in LIVE_TOTALS if getattr(totals, name) is not None]


def discovery(snapshot: Snapshot, topics: Topics) -> list[Message]:
    """Every discovery message for a snapshot: its devices' sensors, then the site totals."""
    pvs = snapshot.supervisor
    pvs_serial = None if pvs is None else pvs.serial
    messages = []
    for device in snapshot.devices:
        if device.kind is Kind.OTHER or not device.serial:
            continue
        info, state_topic = device_info(device, pvs_serial), topics.state(device.serial)
        for name in device.readings:
            sensor = sensor_for(device, name)
            if sensor is not None:
                messages.append(
                    config_message(
                        topics, device.serial, name, sensor, info, state_topic=state_topic
                    )
                )
    if pvs is not None and pvs.serial:
        info, live_topic = device_info(pvs, pvs_serial), topics.live(pvs.serial)
        for name in live_fields(snapshot.totals):
            sensor = LIVE_SENSORS[name]
            messages.append(
                config_message(topics, pvs.serial, name, sensor, info, state_topic=live_topic)
            )
    return messages
