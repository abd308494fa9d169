"""Figure names: varserver camelCase <-> the legacy snake_case the site model uses, and units.

Canonical names are the legacy DeviceList's, the richest of the two APIs. The twins come
from the public integrations' translation (docs/pvs-api.md section 3);
varserver fields with no legacy twin get a derived snake name (`socVal` -> `soc_val`), so
nothing is dropped. The field list follows SunStrong's published varserver catalogue.
"""

from __future__ import annotations

import math
import re

# varserver device field -> canonical name; one table for every device kind, because a
# field means the same on an inverter, a meter or a battery (`p3phsumKw` is always kW).
TWINS: dict[str, str] = {
    "p3phsumKw": "p_3phsum_kw",
    "ltea3phsumKwh": "ltea_3phsum_kwh",
    "vln3phavgV": "vln_3phavg_v",
    "i3phsumA": "i_3phsum_a",
    "freqHz": "freq_hz",
    "tHtsnkDegc": "t_htsnk_degc",
    "pMppt1Kw": "p_mpptsum_kw",  # one MPPT per microinverter: its power is the sum
    "vMppt1V": "v_mppt1_v",
    "iMppt1A": "i_mppt1_a",
    "netLtea3phsumKwh": "net_ltea_3phsum_kwh",
    "q3phsumKvar": "q_3phsum_kvar",
    "s3phsumKva": "s_3phsum_kva",
    "totPfRto": "tot_pf_rto",
    "ctSclFctr": "ct_scl_fctr",
    "p1Kw": "p1_kw",
    "p2Kw": "p2_kw",
    "i1A": "i1_a",
    "i2A": "i2_a",
    "v1nV": "v1n_v",
    "v2nV": "v2n_v",
    "v12V": "v12_v",
    "negLtea3phsumKwh": "neg_ltea_3phsum_kwh",
    "posLtea3phsumKwh": "pos_ltea_3phsum_kwh",
}

# Fields of the battery (ess) and transfer switch with no legacy twin.
DERIVED_FIELDS = (
    *("socVal", "customerSocVal", "sohVal", "opMode", "tInvtrDegc", "vBattV"),
    *("chrgLimitPmaxKw", "dischrgLimPmaxKw", "maxTBattCellDegc", "minTBattCellDegc"),
    *("maxVBattCellV", "minVBattCellV"),
    *("midStEnum", "pvd1StEnum", "tDegc", "v1nGridV", "v2nGridV", "vSpplyV"),
)

# What the translator prints for each kind (so a varserver snapshot renders as it did).
INVERTER_LEGACY = (
    *("p_3phsum_kw", "ltea_3phsum_kwh", "vln_3phavg_v", "i_3phsum_a", "freq_hz"),
    *("t_htsnk_degc", "p_mpptsum_kw", "v_mppt1_v", "i_mppt1_a"),
)
METER_LEGACY = (
    *("p_3phsum_kw", "net_ltea_3phsum_kwh", "q_3phsum_kvar", "s_3phsum_kva"),
    *("tot_pf_rto", "freq_hz", "ct_scl_fctr"),
)
CONSUMPTION_LEGACY = (
    *("p1_kw", "p2_kw", "i1_a", "i2_a", "v1n_v", "v2n_v", "v12_v"),
    *("neg_ltea_3phsum_kwh", "pos_ltea_3phsum_kwh"),
)

# /sys/info/<field> -> canonical name on the supervisor. Upper-case names are legacy
# properties (attributes); `cpu_usage` (percent) keeps its own name because the legacy
# `dl_cpu_load` is a fraction: parse_vars adds that one, derived.
INFO_TWINS: dict[str, str] = {"hwrev": "HWVER", "sw_rev": "SWVER", "uptime": "dl_uptime"}
# Never numbers, even when they look like one (an SSID of digits, hwrev "6.02").
INFO_TEXT = frozenset(
    {
        *("serialnum", "model", "hwrev", "sw_rev", "fwrev", "boardtype", "ssid", "lmac"),
        *("sys_type", "finance_type", "active_interface", "active_interface_mac"),
    }
)
INFO_SECRETS = frozenset({"wpa_key"})  # the PVS's own Wi-Fi key: not kept, not served
SUPERVISOR_PREFIX = "PV Supervisor "
VARSERVER_KIND = "varserver_kind"  # attribute: the /sys/devices/<kind> of an OTHER device

UNITS: dict[str, str] = {
    "dl_uptime": "s",
    "dl_scan_time": "s",
    "dl_cpu_load": "ratio",
    "dl_mem_used": "kB",
    "dl_flash_avail": "kB",
    "cpu_usage": "%",
    "ram_usage": "%",
    "flash_usage": "%",
    "soc_val": "ratio",
    "customer_soc_val": "ratio",
    "soh_val": "ratio",
}
SUFFIX_UNITS = (
    ("_kwh", "kWh"),
    ("_kw", "kW"),
    ("_kvar", "kvar"),
    ("_kva", "kVA"),
    ("_degc", "degC"),
    ("_hz", "Hz"),
    ("_v", "V"),
    ("_a", "A"),
    ("_rto", "ratio"),
    ("_pct", "%"),
)

_UPPER = re.compile(r"[A-Z]")


def camel_to_snake(field: str) -> str:
    """`maxTBattCellDegc` -> `max_t_batt_cell_degc`."""
    return _UPPER.sub(lambda m: "_" + m.group().lower(), field)


def snake_to_camel(name: str) -> str:
    """`max_t_batt_cell_degc` -> `maxTBattCellDegc`."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


DERIVED: dict[str, str] = {field: camel_to_snake(field) for field in DERIVED_FIELDS}
FIELD_TO_NAME: dict[str, str] = {**TWINS, **DERIVED}
NAME_TO_FIELD: dict[str, str] = {name: field for field, name in FIELD_TO_NAME.items()}
INFO_NAME_TO_FIELD: dict[str, str] = {name: field for field, name in INFO_TWINS.items()}


def device_name(field: str) -> str:
    """The canonical name of a varserver device field (derived when it has no twin)."""
    if field in FIELD_TO_NAME:
        return FIELD_TO_NAME[field]
    derived = camel_to_snake(field)
    # Only a name that converts back to the same field is derived; any other (an
    # underscore or a leading capital in the field) is kept as given, so nothing is lost.
    return derived if snake_to_camel(derived) == field else field


def device_field(name: str, *, known_only: bool) -> str | None:
    """The varserver device field of a canonical name (None: no varserver twin)."""
    if name in NAME_TO_FIELD:
        return NAME_TO_FIELD[name]
    if known_only:
        return None
    return name if _UPPER.search(name) else snake_to_camel(name)


def info_name(field: str) -> str:
    """The canonical supervisor name of a `/sys/info/<field>`."""
    return INFO_TWINS.get(field, field)


def info_field(name: str, *, known_only: bool) -> str | None:
    """The `/sys/info/<field>` of a supervisor figure or attribute (None: none)."""
    if name in INFO_NAME_TO_FIELD:
        return INFO_NAME_TO_FIELD[name]
    return None if known_only else name


def unit_of(name: str) -> str:
    """The unit of a figure, from the table or the name's suffix (`_kw` -> kW); else ``""``."""
    if name in UNITS:
        return UNITS[name]
    snake = camel_to_snake(name)
    for suffix, unit in SUFFIX_UNITS:
        if snake.endswith(suffix):
            return unit
    return ""


def as_number(text: object) -> float | None:
    """The finite number a printed value stands for, or None (``""``, words, non-strings)."""
    if not isinstance(text, str):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def number_text(value: float, digits: int = 4) -> str:
    """A number printed as the PVS prints metrics: up to `digits` decimals, no trailing 0."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
