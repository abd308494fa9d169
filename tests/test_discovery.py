"""Home Assistant discovery and the MQTT payloads, as pure functions of a snapshot: no
broker, no event loop. The snapshots are the simulator's own answers, parsed."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.publish.broker import Broker
from bridge.publish.discovery import Message, Topics, discovery
from bridge.publish.states import (
    Lifetime,
    availability,
    device_state,
    live_message,
    state_message,
)
from bridge.simulator import firmware2025, legacy
from bridge.simulator.model import Site
from bridge.site import Device, Kind, Reading, Snapshot, parse_device_list, parse_vars
from bridge.site.live import LiveState, from_totals, merge
from bridge.site.totals import assemble

TOPICS = Topics("pvs-bridge", "homeassistant")
SWVER = "2024.6, Build 61707"


def legacy_snapshot(inverters: int = 3) -> Snapshot:
    clock = FakeClock()
    site = Site(clock, inverters)
    return parse_device_list(legacy.device_list(site, SWVER), clock.wall())


def configs(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    return {message.topic: json.loads(message.payload) for message in discovery(snapshot, TOPICS)}


def by_object(found: dict[str, dict[str, Any]], serial: str) -> dict[str, dict[str, Any]]:
    """The discovery configs of one device, by object id (the topic's fourth level)."""
    return {
        topic.split("/")[3]: config
        for topic, config in found.items()
        if config["device"]["identifiers"] == [f"sunpower_{serial}"]
    }


def test_one_device_per_pvs_inverter_and_meter_each_behind_the_pvs() -> None:
    snapshot = legacy_snapshot()
    assert snapshot.supervisor is not None
    pvs = snapshot.supervisor.serial
    found = configs(snapshot)
    devices = {json.dumps(config["device"], sort_keys=True) for config in found.values()}
    assert len(devices) == 1 + 2 + 3  # every sensor of a device names it the same way
    for device in snapshot.devices:
        info = next(iter(by_object(found, device.serial).values()))["device"]
        assert info["manufacturer"] == "SunPower" and info["model"] == device.model
        assert info["serial_number"] == device.serial
        assert info.get("via_device") == (None if device.serial == pvs else f"sunpower_{pvs}")
        assert info["sw_version"] == device.attribute("SWVER")
    unique = [config["unique_id"] for config in found.values()]
    assert len(unique) == len(set(unique))
    for topic, config in found.items():
        prefix, component, node, _object_id, last = topic.split("/")
        assert (prefix, component, last) == ("homeassistant", "sensor", "config")
        assert config["availability"] == [
            {"topic": "pvs-bridge/status"},
            {"topic": f"pvs-bridge/{node}/availability"},
        ]
        assert config["availability_mode"] == "all"
        assert config["state_topic"] in (f"pvs-bridge/{node}/state", f"pvs-bridge/{node}/live")


def test_the_energy_dashboard_takes_production_consumption_import_and_export() -> None:
    snapshot = legacy_snapshot()
    assert snapshot.supervisor is not None
    found = configs(snapshot)
    production, consumption = (
        by_object(found, meter.serial)
        for meter in sorted(snapshot.meters, key=lambda m: m.is_consumption)
    )
    pvs = by_object(found, snapshot.supervisor.serial)
    increasing = {
        "Grid import": consumption["pos_ltea_3phsum_kwh"],
        "Grid export": consumption["neg_ltea_3phsum_kwh"],
        "Lifetime production": production["net_ltea_3phsum_kwh"],
        "Solar energy": pvs["pv_en"],
        "Home energy": pvs["site_load_en"],
        "Lifetime energy": by_object(found, snapshot.inverters[0].serial)["ltea_3phsum_kwh"],
    }
    for name, config in increasing.items():
        assert config["name"] == name
        assert config["device_class"] == "energy"
        assert config["state_class"] == "total_increasing"
        assert config["unit_of_measurement"] == "kWh"
    assert consumption["net_ltea_3phsum_kwh"]["state_class"] == "total"  # net: may fall
    assert pvs["net_en"]["state_class"] == "total"
    assert pvs["pv_p"]["state_topic"] == f"pvs-bridge/{snapshot.supervisor.serial}/live"


@pytest.mark.parametrize(
    ("name", "device_class", "unit"),
    [
        ("p_3phsum_kw", "power", "kW"),
        ("vln_3phavg_v", "voltage", "V"),
        ("i_3phsum_a", "current", "A"),
        ("freq_hz", "frequency", "Hz"),
        ("t_htsnk_degc", "temperature", "°C"),
    ],
)
def test_inverter_sensors_have_their_class_and_unit(
    name: str, device_class: str, unit: str
) -> None:
    snapshot = legacy_snapshot()
    config = by_object(configs(snapshot), snapshot.inverters[0].serial)[name]
    assert config["device_class"] == device_class
    assert config["unit_of_measurement"] == unit
    assert config["state_class"] == "measurement"
    assert "entity_category" not in config


def test_every_template_reads_the_published_state_as_home_assistant_would() -> None:
    jinja2 = pytest.importorskip("jinja2")
    snapshot = legacy_snapshot()
    lifetime = Lifetime()
    payloads = {
        message.topic: json.loads(message.payload)
        for device in snapshot.devices
        for message in [state_message(TOPICS, device, snapshot.taken_at, lifetime)]
    }
    assert snapshot.supervisor is not None
    live = LiveState()
    live = merge(live, from_totals(snapshot.totals, snapshot.taken_at))
    message = live_message(TOPICS, snapshot.supervisor.serial, live, lifetime)
    payloads[message.topic] = json.loads(message.payload)
    environment = jinja2.Environment()
    for topic, config in configs(snapshot).items():
        value_json, template = payloads[config["state_topic"]], config["value_template"]
        shown = environment.from_string(template).render(value_json=value_json)
        expected = value_json[topic.split("/")[3]] * (100 if "* 100" in template else 1)
        assert float(shown) == pytest.approx(expected, abs=0.01), template


def test_a_battery_shows_its_charge_in_percent() -> None:
    def reading(value: float, unit: str) -> Reading:
        return Reading(value, str(value), unit)

    battery = Device(
        Kind.ESS,
        "BAT1",
        "SPWR-Equinox",
        "working",
        None,
        {
            "soc_val": reading(0.5, "ratio"),
            "pos_ltea_3phsum_kwh": reading(10.0, "kWh"),
            "neg_ltea_3phsum_kwh": reading(12.0, "kWh"),
        },
    )
    pvs = Device(Kind.SUPERVISOR, "PVS1", "PV Supervisor PVS6", "working", None)
    found = by_object(configs(assemble(0.0, None, [pvs, battery])), "BAT1")
    assert found["soc_val"]["device_class"] == "battery"
    assert found["soc_val"]["unit_of_measurement"] == "%"
    assert "100" in found["soc_val"]["value_template"]
    assert found["pos_ltea_3phsum_kwh"]["name"] == "Energy discharged"
    assert found["neg_ltea_3phsum_kwh"]["name"] == "Energy charged"
    assert found["neg_ltea_3phsum_kwh"]["state_class"] == "total_increasing"
    assert found["soc_val"]["device"]["name"] == "Battery BAT1"


def test_2025_firmware_gives_the_same_devices() -> None:
    clock = FakeClock()
    site = Site(clock, 2)
    snapshot = parse_vars(firmware2025.variables(site, SWVER, 61840), clock.wall())
    found = configs(snapshot)
    serials = {config["device"]["identifiers"][0] for config in found.values()}
    assert serials == {f"sunpower_{device.serial}" for device in snapshot.devices}
    assert snapshot.supervisor is not None
    info = by_object(found, snapshot.supervisor.serial)["pv_p"]["device"]
    assert info["sw_version"]


def test_a_state_carries_every_reading_and_holds_back_a_lower_lifetime_counter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    snapshot = legacy_snapshot()
    inverter = snapshot.inverters[0]
    lifetime = Lifetime()
    state = device_state(inverter, snapshot.taken_at, lifetime)
    assert state["serial"] == inverter.serial and state["state"] == inverter.state
    for name, reading in inverter.readings.items():
        assert state[name] == reading.value
    energy = inverter.readings["ltea_3phsum_kwh"]
    lower = Device(
        inverter.kind,
        inverter.serial,
        inverter.model,
        inverter.state,
        inverter.measured_at,
        {**inverter.readings, "ltea_3phsum_kwh": Reading(energy.value - 1, "", "kWh")},
    )
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert device_state(lower, 0.0, lifetime)["ltea_3phsum_kwh"] == energy.value
    assert lifetime.held_back == 3
    assert len([r for r in caplog.records if "went down" in r.getMessage()]) == 1
    higher = Reading(energy.value + 1, "", "kWh")
    raised = Device(inverter.kind, inverter.serial, inverter.model, inverter.state, None,
                    {"ltea_3phsum_kwh": higher})  # fmt: skip
    assert device_state(raised, 0.0, lifetime)["ltea_3phsum_kwh"] == energy.value + 1


def test_live_totals_hold_back_a_lower_solar_energy_but_not_the_net() -> None:
    lifetime = Lifetime()
    first = LiveState({"pv_en": 100.0, "net_en": 50.0, "pv_p": 1.2}, 10.0)
    later = LiveState({"pv_en": 99.0, "net_en": 49.0, "pv_p": 1.1}, 20.0)
    live_message(TOPICS, "PVS1", first, lifetime)
    message = live_message(TOPICS, "PVS1", later, lifetime)
    assert message.topic == "pvs-bridge/PVS1/live" and message.retain
    assert json.loads(message.payload) == {
        "time": 20.0,
        "pv_en": 100.0,
        "net_en": 49.0,
        "pv_p": 1.1,
    }


def test_availability_follows_the_age_of_each_devices_last_read() -> None:
    seen = {"A": 0.0, "B/+#": 50.0}
    assert availability(TOPICS, seen, 100.0, 60.0) == [
        Message("pvs-bridge/A/availability", "offline"),
        Message("pvs-bridge/B___/availability", "online"),
    ]


@pytest.mark.parametrize(
    ("url", "address", "tls", "user", "password"),
    [
        ("mqtt://broker.lan", "broker.lan:1883", False, None, None),
        ("mqtts://u%40x:p%2Fw@broker.lan", "broker.lan:8883", True, "u@x", "p/w"),
        ("mqtt://user:secret@[::1]:1884", "[::1]:1884", False, "user", "secret"),
    ],
)
def test_the_broker_url_is_shown_without_credentials(
    url: str, address: str, tls: bool, user: str | None, password: str | None
) -> None:
    broker = Broker.from_url(url)
    assert (broker.address, broker.tls, broker.username, broker.password) == (
        address,
        tls,
        user,
        password,
    )
    assert broker.display == f"{'mqtts' if tls else 'mqtt'}://{address}"
    assert "secret" not in repr(broker) and "p/w" not in repr(broker)
