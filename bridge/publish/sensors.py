"""Which readings become Home Assistant sensors, and how: device class, state class, unit.

By the figure's unit (`site.figures.unit_of`), with names for the known figures and the
lifetime energies named by the device's role (grid import and export on the consumption
meter, charged and discharged on a battery). Pure tables and functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.site.model import Device, Kind


@dataclass(frozen=True)
class Sensor:
    """How Home Assistant should read one figure (a ratio shown in % has `scale` 100)."""

    name: str
    device_class: str | None
    state_class: str
    unit: str | None
    scale: float = 1.0
    diagnostic: bool = False


BY_UNIT: dict[str, tuple[str | None, str, str]] = {
    "kW": ("power", "measurement", "kW"),
    "kWh": ("energy", "total_increasing", "kWh"),
    "V": ("voltage", "measurement", "V"),
    "A": ("current", "measurement", "A"),
    "Hz": ("frequency", "measurement", "Hz"),
    "degC": ("temperature", "measurement", "°C"),
    "kvar": (None, "measurement", "kvar"),
    "kVA": (None, "measurement", "kVA"),
    "%": (None, "measurement", "%"),
    "s": ("duration", "measurement", "s"),
    "kB": ("data_size", "measurement", "kB"),
}
RATIOS = {
    "tot_pf_rto": Sensor("Power factor", "power_factor", "measurement", None),
    "soc_val": Sensor("State of charge", "battery", "measurement", "%", 100.0),
    "customer_soc_val": Sensor("Customer state of charge", "battery", "measurement", "%", 100.0),
    "soh_val": Sensor("State of health", None, "measurement", "%", 100.0),
    "dl_cpu_load": Sensor("CPU load", None, "measurement", "%", 100.0, diagnostic=True),
}
NAMES = {
    "p_3phsum_kw": "Power",
    "ltea_3phsum_kwh": "Lifetime energy",
    "vln_3phavg_v": "AC voltage",
    "i_3phsum_a": "AC current",
    "freq_hz": "Frequency",
    "t_htsnk_degc": "Heatsink temperature",
    "p_mpptsum_kw": "DC power",
    "v_mppt1_v": "DC voltage",
    "i_mppt1_a": "DC current",
    "q_3phsum_kvar": "Reactive power",
    "s_3phsum_kva": "Apparent power",
    **{f"p{n}_kw": f"Power L{n}" for n in (1, 2)},
    **{f"i{n}_a": f"Current L{n}" for n in (1, 2)},
    **{f"v{n}n_v": f"Voltage L{n}-N" for n in (1, 2)},
    "v12_v": "Voltage L1-L2",
    "dl_uptime": "Uptime",
    "dl_scan_time": "Scan time",
    "dl_mem_used": "Memory used",
    "dl_flash_avail": "Flash available",
    "cpu_usage": "CPU usage",
    "ram_usage": "RAM usage",
    "flash_usage": "Flash usage",
}
# Lifetime energies by role: the Energy dashboard's grid import and export, a battery's.
ROLE_NAMES = {
    ("production", "net_ltea_3phsum_kwh"): "Lifetime production",
    ("consumption", "net_ltea_3phsum_kwh"): "Net grid energy",
    ("consumption", "pos_ltea_3phsum_kwh"): "Grid import",
    ("consumption", "neg_ltea_3phsum_kwh"): "Grid export",
    ("battery", "pos_ltea_3phsum_kwh"): "Energy discharged",
    ("battery", "neg_ltea_3phsum_kwh"): "Energy charged",
}
# The site totals on the PVS device, read from its live topic.
LIVE_SENSORS = {
    "pv_p": Sensor("Solar power", "power", "measurement", "kW"),
    "pv_en": Sensor("Solar energy", "energy", "total_increasing", "kWh"),
    "net_p": Sensor("Grid power", "power", "measurement", "kW"),
    "net_en": Sensor("Grid net energy", "energy", "total", "kWh"),
    "site_load_p": Sensor("Home power", "power", "measurement", "kW"),
    "site_load_en": Sensor("Home energy", "energy", "total_increasing", "kWh"),
    "ess_p": Sensor("Battery power", "power", "measurement", "kW"),
    "ess_en": Sensor("Battery net energy", "energy", "total", "kWh"),
    "soc": Sensor("Battery charge", "battery", "measurement", "%"),
}
LIVE_INCREASING = frozenset(f for f, s in LIVE_SENSORS.items() if s.state_class.endswith("ing"))


def role(device: Device) -> str:
    """What a device is to its owner: pvs, inverter, production, consumption, battery."""
    if device.kind is Kind.METER:
        return "consumption" if device.is_consumption else "production"
    return {Kind.SUPERVISOR: "pvs", Kind.ESS: "battery"}.get(device.kind, device.kind.value)


def increasing(device: Device, name: str) -> bool:
    """A lifetime counter that only grows (a consumption meter's net energy may fall)."""
    reading = device.readings.get(name)
    if reading is None or reading.unit != "kWh":
        return False
    return not (role(device) == "consumption" and name.startswith("net_"))


def sensor_for(device: Device, name: str) -> Sensor | None:
    """The sensor for one reading (None: nothing Home Assistant could class or chart)."""
    reading = device.readings.get(name)
    if reading is None:
        return None
    if name in RATIOS:
        return RATIOS[name]
    known = BY_UNIT.get(reading.unit)
    if known is None:
        return None
    device_class, state_class, unit = known
    if reading.unit == "kWh" and not increasing(device, name):
        state_class = "total"
    label = ROLE_NAMES.get((role(device), name)) or NAMES.get(name)
    label = label or name.replace("_", " ").capitalize()
    diagnostic = device.kind is Kind.SUPERVISOR
    return Sensor(label, device_class, state_class, unit, diagnostic=diagnostic)
