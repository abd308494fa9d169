"""2025-firmware varserver variables <-> the site model.

`/sys/info/<field>` is the supervisor, `/sys/devices/<kind>/<index>/<field>` the other
devices (kinds inverter, meter, ess; transfer_switch and any new kind go to `others`).
Numbers become Readings under their canonical (legacy) names, everything else stays an
attribute, so a varserver snapshot renders back to the same variables. Other variables
(`/sys/livedata/*`, `/sys/pvs/*`, ...) are not part of the site: totals are derived.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bridge.site import figures, timefmt
from bridge.site.model import LIVE_TOTALS, Device, Kind, Reading, Snapshot
from bridge.site.totals import assemble

DEVICE_VAR = re.compile(r"/sys/devices/(?P<kind>[a-z_]+)/(?P<index>\d+)/(?P<field>[A-Za-z0-9_]+)")
INFO_PREFIX = "/sys/info/"
VAR_KINDS = {"inverter": Kind.INVERTER, "meter": Kind.METER, "ess": Kind.ESS}
IDENTITY_FIELDS = ("sn", "prodMdlNm", "msmtEps")  # printed first, as the PVS lists them


def group_devices(values: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    """`/sys/devices/<kind>/<index>/<field>` -> {kind: [fields of each index, in order]}."""
    found: dict[str, dict[int, dict[str, str]]] = {}
    for name, value in values.items():
        matched = DEVICE_VAR.fullmatch(name)
        if matched:
            kind, index = matched["kind"], int(matched["index"])
            found.setdefault(kind, {}).setdefault(index, {})[matched["field"]] = str(value)
    return {kind: [by_index[i] for i in sorted(by_index)] for kind, by_index in found.items()}


def parse_vars(values: Mapping[str, str], taken_at: float) -> Snapshot:
    """Varserver variables -> Snapshot; the PVS's clock is taken to be `taken_at`."""
    info = {
        name[len(INFO_PREFIX) :]: str(value)
        for name, value in values.items()
        if name.startswith(INFO_PREFIX)
    }
    devices = [parse_supervisor(info)]
    groups = group_devices(values)
    for kind in sorted(groups, key=lambda k: (k not in VAR_KINDS, k)):
        devices.extend(parse_device(kind, fields) for fields in groups[kind])
    # The translator always stamped CURTIME with the moment of asking; so does the model.
    return assemble(taken_at, taken_at, devices)


def _split(
    items: Mapping[str, str], name_of: dict[str, str], text_only: frozenset[str]
) -> tuple[dict[str, Reading], list[tuple[str, object]]]:
    readings: dict[str, Reading] = {}
    attributes: list[tuple[str, object]] = []
    for field, text in items.items():
        name = name_of[field]
        number = None if field in text_only else figures.as_number(text)
        if number is None:
            attributes.append((name, text))
        else:
            readings[name] = Reading(number, text, figures.unit_of(name))
    return readings, attributes


def parse_supervisor(info: Mapping[str, str]) -> Device:
    """The PVS itself from its `/sys/info/<field>` values (the Wi-Fi key is not kept)."""
    rest = {
        field: text
        for field, text in info.items()
        if field not in ("serialnum", "model") and field not in figures.INFO_SECRETS
    }
    names = {field: figures.info_name(field) for field in rest}
    readings, attributes = _split(rest, names, figures.INFO_TEXT)
    cpu = readings.get("cpu_usage")
    if cpu is not None:
        # The legacy figure is a fraction; printed the way the translator printed it.
        load = cpu.value / 100
        readings["dl_cpu_load"] = Reading(load, figures.number_text(load), "ratio")
    return Device(
        kind=Kind.SUPERVISOR,
        serial=info.get("serialnum", ""),
        model=figures.SUPERVISOR_PREFIX + info.get("model", ""),
        state="working",
        measured_at=None,
        readings=readings,
        attributes=tuple(attributes),
    )


def parse_device(kind: str, fields: Mapping[str, str]) -> Device:
    """One `/sys/devices/<kind>/<index>/*` group -> Device."""
    stamp = fields.get("msmtEps")
    measured_at = None if stamp is None else timefmt.parse_iso(stamp)
    rest = {field: text for field, text in fields.items() if field not in IDENTITY_FIELDS}
    names = {field: figures.device_name(field) for field in rest}
    readings, attributes = _split(rest, names, frozenset())
    if stamp is not None and (measured_at is None or timefmt.format_iso(measured_at) != stamp):
        attributes.insert(0, ("msmtEps", stamp))  # printed back as it came
    if kind not in VAR_KINDS:
        attributes.insert(0, (figures.VARSERVER_KIND, kind))
    return Device(
        kind=VAR_KINDS.get(kind, Kind.OTHER),
        serial=fields.get("sn", ""),
        model=fields.get("prodMdlNm", ""),
        state="working",
        measured_at=measured_at,
        readings=readings,
        attributes=tuple(attributes),
    )


def render_vars(snapshot: Snapshot) -> dict[str, str]:
    """The varserver tree of a snapshot: /sys/info, /sys/devices, /sys/livedata."""
    values: dict[str, str] = {}
    if snapshot.supervisor is not None:
        info = render_info(snapshot.supervisor)
        values.update((INFO_PREFIX + field, text) for field, text in sorted(info.items()))
    counters: dict[str, int] = {}
    for device in snapshot.meters + snapshot.inverters + snapshot.storage + snapshot.others:
        kind = _var_kind(device)
        if kind is None:
            continue
        index = counters[kind] = counters.get(kind, -1) + 1
        prefix = f"/sys/devices/{kind}/{index}/"
        values.update((prefix + field, text) for field, text in render_fields(device).items())
    values.update(render_livedata(snapshot))
    return values


def _var_kind(device: Device) -> str | None:
    for kind, known in VAR_KINDS.items():
        if device.kind is known:
            return kind
    found = device.attribute(figures.VARSERVER_KIND)
    # A legacy device whose type varserver has no kind for gets no invented path.
    return found if isinstance(found, str) and not device.legacy_shaped else None


def render_info(supervisor: Device) -> dict[str, str]:
    """`/sys/info/<field>` values of the supervisor (legacy ones: only fields with a twin)."""
    known_only = supervisor.legacy_shaped
    model = supervisor.model.removeprefix(figures.SUPERVISOR_PREFIX)
    info = _identity(supervisor, {"serialnum": supervisor.serial, "model": model})
    for name, reading in supervisor.readings.items():
        field = None if name == "dl_cpu_load" else figures.info_field(name, known_only=known_only)
        if field is not None:
            info[field] = reading.text
    for name, value in supervisor.attributes:
        field = figures.info_field(name, known_only=known_only)
        if field is not None:
            info[field] = str(value)
    load = supervisor.readings.get("dl_cpu_load")
    if "cpu_usage" not in info and load is not None:
        info["cpu_usage"] = figures.number_text(load.value * 100, 1)  # percent here
    return info


def _identity(device: Device, fields: dict[str, str]) -> dict[str, str]:
    if device.legacy_shaped:
        return fields
    # parse_vars reads a missing serial or model as "": it was not given, so not printed.
    return {field: text for field, text in fields.items() if text}


def render_fields(device: Device) -> dict[str, str]:
    """`/sys/devices/<kind>/<index>/<field>` values of one device, identity fields first."""
    known_only = device.legacy_shaped
    fields = _identity(device, {"sn": device.serial, "prodMdlNm": device.model})
    if device.measured_at is not None:
        fields["msmtEps"] = timefmt.format_iso(device.measured_at)
    rest: dict[str, str] = {}
    for name, reading in device.readings.items():
        field = figures.device_field(name, known_only=known_only)
        if field is not None:
            rest[field] = reading.text
    for name, value in device.attributes:
        if name == figures.VARSERVER_KIND:
            continue  # the path's <kind>, not a field
        field = figures.device_field(name, known_only=known_only)
        if field == "msmtEps":
            fields[field] = str(value)  # a time that did not parse cleanly, as it came
        elif field is not None:
            rest[field] = str(value)
    return fields | dict(sorted(rest.items()))


def render_livedata(snapshot: Snapshot) -> dict[str, str]:
    """`/sys/livedata/*` from the snapshot's derived totals (absent ones left out)."""
    totals = snapshot.totals
    values = {"/sys/livedata/time": str(int(snapshot.taken_at))}
    for name in LIVE_TOTALS:
        value = getattr(totals, name)
        if value is not None:
            values[f"/sys/livedata/{name}"] = figures.number_text(value)
    return values
