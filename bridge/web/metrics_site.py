"""The site's figures as Prometheus families, built from one snapshot at scrape time.

The table of figures is `metrics_figures`. A figure the PVS prints in kW or kWh is scaled
from its printed digits (decimal arithmetic), so the number shown is exactly the PVS's,
in the base unit. A device listed twice (same kind and serial) is shown once: Prometheus
refuses a whole scrape with a duplicate series.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from bridge.site import Device, Kind, Snapshot
from bridge.site.model import LiveTotals
from bridge.web.metrics_figures import GROUPS, ONE, TOTALS, Figure

Family = GaugeMetricFamily | CounterMetricFamily


def scaled(text: str, value: float, scale: Decimal) -> float:
    """The figure printed as `text` times `scale`, exactly (`value` when not a decimal)."""
    if scale == ONE:
        return value
    try:
        return float(Decimal(text) * scale)
    except InvalidOperation:
        return value * float(scale)


def distinct(devices: Iterable[Device]) -> Iterator[Device]:
    """The devices, each (kind, serial) once: the first listed."""
    seen: set[tuple[Kind, str]] = set()
    for device in devices:
        if (device.kind, device.serial) not in seen:
            seen.add((device.kind, device.serial))
            yield device


def _labels(device: Device) -> list[str]:
    if device.kind is Kind.METER:
        return [device.serial, "consumption" if device.is_consumption else "production"]
    if device.kind is Kind.SUPERVISOR:
        return [device.serial]
    return [device.serial, device.model]


def _family(figure: Figure, labels: tuple[str, ...]) -> Family:
    names = [*labels, "leg"] if figure.leg else list(labels)
    kind = CounterMetricFamily if figure.counter else GaugeMetricFamily
    return kind(figure.family, figure.help, labels=names)


def device_families(snapshot: Snapshot) -> list[Metric]:
    """Each device's figures, one family per figure, labelled by device."""
    families: dict[str, Family] = {}
    for device in distinct(snapshot.devices):
        if device.kind not in GROUPS:
            continue
        names, figures = GROUPS[device.kind]
        labels = _labels(device)
        for figure in figures:
            reading = device.readings.get(figure.source)
            if reading is None:
                continue
            if figure.family not in families:
                families[figure.family] = _family(figure, names)
            value = scaled(reading.text, reading.value, figure.scale)
            families[figure.family].add_metric([*labels, *figure.legs], value)
    return list(families.values())


def total_families(totals: LiveTotals) -> list[Metric]:
    """The site's totals (what the live feed and /sys/livedata show), those known."""
    families: list[Metric] = []
    for figure in TOTALS:
        value = getattr(totals, figure.source)
        if value is not None:
            family = GaugeMetricFamily(figure.family, figure.help)
            family.add_metric([], scaled(repr(value), value, figure.scale))
            families.append(family)
    return families


def state_families(snapshot: Snapshot, now_wall: float) -> list[Metric]:
    """Every device's identity, state and data age."""
    info = InfoMetricFamily(
        "pvs_device", "Each device: its model and firmware (SWVER).", labels=["serial", "type"]
    )
    working = GaugeMetricFamily(
        "pvs_device_working",
        "1 when the device's state is working, else 0 (the state as given in `state`).",
        labels=["serial", "type", "state"],
    )
    age = GaugeMetricFamily(
        "pvs_device_data_age_seconds",
        "Seconds since the device's data was measured (its DATATIME or msmtEps).",
        labels=["serial", "type"],
    )
    for device in distinct(snapshot.devices):
        labels = [device.serial, device.kind.value]
        firmware = device.attribute("SWVER")
        info.add_metric(labels, {"model": device.model, "firmware": str(firmware or "")})
        working.add_metric([*labels, device.state], float(device.state.lower() == "working"))
        if device.measured_at is not None:
            age.add_metric(labels, now_wall - device.measured_at)
    return [info, working, age]


def site_families(snapshot: Snapshot, now_wall: float) -> list[Metric]:
    """Every family of the site's data."""
    return [
        *state_families(snapshot, now_wall),
        *device_families(snapshot),
        *total_families(snapshot.totals),
    ]
