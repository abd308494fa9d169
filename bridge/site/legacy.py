"""The legacy DeviceList <-> the site model.

Parsing keeps everything: lower-case keys whose value is a printed number become
Readings, every other key stays an attribute as given, so a legacy document renders back
unchanged (keys in the PVS's sorted order). Devices parsed from varserver variables carry
no DEVICE_TYPE; they render exactly as the 2025 translator did (the reference cases in
tests/fixtures/varserver/translated.json).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge.site import figures, timefmt
from bridge.site.model import Device, Kind, Reading, SiteDataError, Snapshot
from bridge.site.totals import assemble

DEVICE_KINDS = {"pvs": Kind.SUPERVISOR, "inverter": Kind.INVERTER, "power meter": Kind.METER}
# Battery device types seen in public integrations: "Energy Storage System", "ESS BMS",
# "ESS Hub", "HUB+", "Battery", "SunVault"; matched by word so "Wireless" is not "ESS".
ESS_WORDS = frozenset({"ess", "storage", "battery", "sunvault", "hub+", "bms"})
CORE_KEYS = ("SERIAL", "MODEL", "STATE")
DL_ZERO_FIELDS = (
    "dl_comm_err",
    "dl_err_count",
    "dl_flash_avail",
    "dl_mem_used",
    "dl_scan_time",
    "dl_skipped_scans",
    "dl_untransmitted",
)
STATE_TEXT = {"working": "Working", "error": "Error"}


def kind_of(device_type: object) -> Kind:
    """The Kind of a legacy DEVICE_TYPE (anything unrecognised is OTHER)."""
    if not isinstance(device_type, str):
        return Kind.OTHER
    lowered = device_type.strip().lower()
    if lowered in DEVICE_KINDS:
        return DEVICE_KINDS[lowered]
    words = set(re.split(r"[^a-z0-9+]+", lowered))
    return Kind.ESS if words & ESS_WORDS else Kind.OTHER


def parse_device(raw: Mapping[str, Any]) -> Device:
    """One legacy device dict -> Device (nothing dropped)."""
    core = {key: raw[key] for key in CORE_KEYS if isinstance(raw.get(key), str)}
    measured_at = None
    consumed = set(core)
    datatime = raw.get("DATATIME")
    if isinstance(datatime, str):
        measured_at = timefmt.parse_legacy(datatime)
        # Only a time that prints back identically is dropped in favour of measured_at.
        if measured_at is not None and timefmt.format_legacy(measured_at) == datatime:
            consumed.add("DATATIME")
    readings: dict[str, Reading] = {}
    attributes: list[tuple[str, object]] = []
    for key, value in raw.items():
        if key in consumed:
            continue
        number = figures.as_number(value) if key == key.lower() else None
        if number is None:
            attributes.append((key, value))
        else:
            readings[key] = Reading(number, value, figures.unit_of(key))
    return Device(
        kind=kind_of(raw.get("DEVICE_TYPE")),
        serial=core.get("SERIAL", ""),
        model=core.get("MODEL", ""),
        state=core.get("STATE", "working"),
        measured_at=measured_at,
        readings=readings,
        attributes=tuple(attributes),
    )


def parse_device_list(document: Mapping[str, Any], taken_at: float) -> Snapshot:
    """A legacy DeviceList document -> Snapshot; SiteDataError when it has no devices list."""
    listed = document.get("devices") if isinstance(document, Mapping) else None
    if not isinstance(listed, list):
        keys = sorted(document) if isinstance(document, Mapping) else type(document).__name__
        raise SiteDataError(f"DeviceList has no 'devices' list (got {keys})")
    devices = []
    pvs_time = None
    for index, raw in enumerate(listed):
        if not isinstance(raw, Mapping):
            raise SiteDataError(f"DeviceList device {index} is not an object: {raw!r:.80}")
        devices.append(parse_device(raw))
        curtime = raw.get("CURTIME")
        if pvs_time is None and isinstance(curtime, str):
            pvs_time = timefmt.parse_legacy(curtime)
    return assemble(taken_at, pvs_time, devices)


def render_device_list(snapshot: Snapshot) -> dict[str, Any]:
    """The legacy DeviceList document of a snapshot."""
    curtime = _curtime(snapshot)
    rendered = (render_device(device, curtime) for device in snapshot.devices)
    return {"devices": [entry for entry in rendered if entry is not None], "result": "succeed"}


def render_device_details(snapshot: Snapshot, serial: str) -> dict[str, Any] | None:
    """Command=DeviceDetails: `{"devices": [that device], "result": "succeed"}`, or None."""
    device = snapshot.find(serial)
    rendered = None if device is None else render_device(device, _curtime(snapshot))
    return None if rendered is None else {"devices": [rendered], "result": "succeed"}


def _curtime(snapshot: Snapshot) -> str:
    wall = snapshot.pvs_time if snapshot.pvs_time is not None else snapshot.taken_at
    return timefmt.format_legacy(wall)


def render_device(device: Device, curtime: str) -> dict[str, Any] | None:
    """One device as a legacy DeviceList entry (None: no legacy shape for it)."""
    if device.legacy_shaped:
        return _as_given(device)
    if device.kind is Kind.SUPERVISOR:
        return _translated_supervisor(device, curtime)
    if device.kind is Kind.INVERTER:
        return _translated_inverter(device, curtime)
    if device.kind is Kind.METER:
        return _translated_meter(device, curtime)
    return None  # a varserver battery or transfer switch: the translator never listed one


def _as_given(device: Device) -> dict[str, Any]:
    fields: dict[str, Any] = {"MODEL": device.model, "SERIAL": device.serial}
    fields["STATE"] = device.state
    if device.measured_at is not None:
        fields["DATATIME"] = timefmt.format_legacy(device.measured_at)
    fields.update((name, reading.text) for name, reading in device.readings.items())
    fields.update(device.attributes)  # a DATATIME that did not parse cleanly wins
    return dict(sorted(fields.items()))  # the PVS prints keys in sorted order


def _text(device: Device, name: str) -> str | None:
    reading = device.readings.get(name)
    if reading is not None:
        return reading.text
    value = device.attribute(name)
    return value if isinstance(value, str) else None


def _figures(device: Device, names: tuple[str, ...]) -> dict[str, str]:
    return {name: text for name in names if (text := _text(device, name)) is not None}


def _translated_supervisor(device: Device, curtime: str) -> dict[str, Any]:
    model = device.model
    if not model.startswith(figures.SUPERVISOR_PREFIX):
        model = figures.SUPERVISOR_PREFIX + model
    uptime = device.reading("dl_uptime")
    fields: dict[str, Any] = {
        "CURTIME": curtime,
        "DATATIME": curtime,
        "DETAIL": "detail",
        "DEVICE_TYPE": "PVS",
        "HWVER": _text(device, "HWVER") or "",
        "MODEL": model,
        "SERIAL": device.serial,
        "STATE": device.state,
        "STATEDESCR": _state_text(device.state),
        "SWVER": _text(device, "SWVER") or "",
        "dl_cpu_load": _text(device, "dl_cpu_load") or "0",
        "dl_uptime": "0" if uptime is None else str(int(uptime)),  # whole seconds
    }
    fields.update((name, _text(device, name) or "0") for name in DL_ZERO_FIELDS)
    return dict(sorted(fields.items()))


def _common(device: Device, curtime: str, device_type: str) -> dict[str, Any]:
    measured = device.measured_at
    return {
        "CURTIME": curtime,
        "DATATIME": curtime if measured is None else timefmt.format_legacy(measured),
        "DESCR": f"{device_type} {device.serial}",
        "DEVICE_TYPE": device_type,
        "ISDETAIL": True,
        "MODEL": device.model,
        "SERIAL": device.serial,
        "STATE": device.state,
        "STATEDESCR": _state_text(device.state),
        "origin": "data_logger",
    }


def _translated_inverter(device: Device, curtime: str) -> dict[str, Any]:
    fields = _common(device, curtime, "Inverter")
    fields.update(_figures(device, figures.INVERTER_LEGACY))
    return dict(sorted(fields.items()))


def _translated_meter(device: Device, curtime: str) -> dict[str, Any]:
    consumption = device.is_consumption
    fields = _common(device, curtime, "Power Meter")
    fields["TYPE"] = "PVS5-METER-C" if consumption else "PVS5-METER-P"
    scale = _text(device, "ct_scl_fctr")
    if scale is not None:
        fields["CAL0"] = scale  # the legacy list repeats the CT scale here
    names = figures.METER_LEGACY + (figures.CONSUMPTION_LEGACY if consumption else ())
    fields.update(_figures(device, names))
    return dict(sorted(fields.items()))


def _state_text(state: str) -> str:
    return STATE_TEXT.get(state, state.capitalize())
