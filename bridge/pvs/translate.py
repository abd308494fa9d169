"""Legacy answers built from 2025-firmware data, for clients that only know the old API.

The mapping is the one public integrations use (docs/pvs-api.md section 3): varserver
variables `/sys/devices/<kind>/<index>/<field>` and `/sys/info/<field>` become the
devices of a legacy DeviceList. Values stay the strings the PVS gave; nothing is
recomputed except `dl_cpu_load` (a percentage there, a fraction here), `dl_uptime`
(whole seconds) and the timestamps (`YYYY,MM,DD,HH,MM,SS`). The body is printed the way
the PVS prints JSON, so clients that filter lines by their first character still work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bridge import cjson

DEVICE_VAR = re.compile(r"/sys/devices/(?P<kind>[a-z_]+)/(?P<index>\d+)/(?P<field>[A-Za-z0-9_]+)")

INVERTER_FIELDS = {
    "p3phsumKw": "p_3phsum_kw",
    "ltea3phsumKwh": "ltea_3phsum_kwh",
    "vln3phavgV": "vln_3phavg_v",
    "i3phsumA": "i_3phsum_a",
    "freqHz": "freq_hz",
    "tHtsnkDegc": "t_htsnk_degc",
    "pMppt1Kw": "p_mpptsum_kw",
    "vMppt1V": "v_mppt1_v",
    "iMppt1A": "i_mppt1_a",
}
METER_FIELDS = {
    "p3phsumKw": "p_3phsum_kw",
    "netLtea3phsumKwh": "net_ltea_3phsum_kwh",
    "q3phsumKvar": "q_3phsum_kvar",
    "s3phsumKva": "s_3phsum_kva",
    "totPfRto": "tot_pf_rto",
    "freqHz": "freq_hz",
    "ctSclFctr": "ct_scl_fctr",
}
CONSUMPTION_METER_FIELDS = {
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
DL_ZERO_FIELDS = (
    "dl_comm_err",
    "dl_err_count",
    "dl_flash_avail",
    "dl_mem_used",
    "dl_scan_time",
    "dl_skipped_scans",
    "dl_untransmitted",
)


def pvs_time(wall: float) -> str:
    """The legacy `YYYY,MM,DD,HH,MM,SS` (UTC) of a wall-clock time."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y,%m,%d,%H,%M,%S")


def pvs_time_from_iso(text: str) -> str | None:
    """`2025-06-28T03:35:00Z` -> `2025,06,28,03,35,00` (None when it is not such a time)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y,%m,%d,%H,%M,%S")


def _number_text(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def group_devices(values: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    """`/sys/devices/<kind>/<index>/<field>` -> {kind: [fields of index 0, 1, ...]}."""
    found: dict[str, dict[int, dict[str, str]]] = {}
    for name, value in values.items():
        matched = DEVICE_VAR.fullmatch(name)
        if matched:
            kind, index = matched["kind"], int(matched["index"])
            found.setdefault(kind, {}).setdefault(index, {})[matched["field"]] = str(value)
    return {kind: [by_index[i] for i in sorted(by_index)] for kind, by_index in found.items()}


def supervisor_device(info: Mapping[str, str], curtime: str) -> dict[str, Any]:
    """The PVS's own entry from `/sys/info/*`."""
    device: dict[str, Any] = {
        "CURTIME": curtime,
        "DATATIME": curtime,
        "DETAIL": "detail",
        "DEVICE_TYPE": "PVS",
        "HWVER": info.get("hwrev", ""),
        "MODEL": "PV Supervisor " + info.get("model", ""),
        "SERIAL": info.get("serialnum", ""),
        "STATE": "working",
        "STATEDESCR": "Working",
        "SWVER": info.get("sw_rev", ""),
    }
    device.update(dict.fromkeys(DL_ZERO_FIELDS, "0"))
    try:
        device["dl_cpu_load"] = _number_text(float(info.get("cpu_usage", "0")) / 100)
    except ValueError:
        device["dl_cpu_load"] = "0"
    try:
        device["dl_uptime"] = str(int(float(info.get("uptime", "0"))))
    except ValueError:
        device["dl_uptime"] = "0"
    return dict(sorted(device.items()))


def _common(fields: Mapping[str, str], curtime: str) -> dict[str, Any]:
    return {
        "CURTIME": curtime,
        "DATATIME": pvs_time_from_iso(fields.get("msmtEps", "")) or curtime,
        "ISDETAIL": True,
        "MODEL": fields.get("prodMdlNm", ""),
        "SERIAL": fields.get("sn", ""),
        "STATE": "working",
        "STATEDESCR": "Working",
        "origin": "data_logger",
    }


def inverter_device(fields: Mapping[str, str], curtime: str) -> dict[str, Any]:
    """One microinverter from its varserver fields."""
    device = _common(fields, curtime)
    device.update(DESCR="Inverter " + fields.get("sn", ""), DEVICE_TYPE="Inverter")
    device.update({legacy: fields[var] for var, legacy in INVERTER_FIELDS.items() if var in fields})
    return dict(sorted(device.items()))


def meter_device(fields: Mapping[str, str], curtime: str) -> dict[str, Any]:
    """One power meter; `prodMdlNm` ending in `c` is a consumption meter, else production."""
    consumption = fields.get("prodMdlNm", "").lower().endswith("c")
    device = _common(fields, curtime)
    device.update(
        DESCR="Power Meter " + fields.get("sn", ""),
        DEVICE_TYPE="Power Meter",
        TYPE="PVS5-METER-C" if consumption else "PVS5-METER-P",
    )
    if "ctSclFctr" in fields:
        device["CAL0"] = fields["ctSclFctr"]  # the legacy list repeats the CT scale here
    table = {**METER_FIELDS, **CONSUMPTION_METER_FIELDS} if consumption else METER_FIELDS
    device.update({legacy: fields[var] for var, legacy in table.items() if var in fields})
    return dict(sorted(device.items()))


def info_fields(values: Mapping[str, str]) -> dict[str, str]:
    """`/sys/info/<field>` -> {field: value}."""
    prefix = "/sys/info/"
    return {name[len(prefix) :]: str(v) for name, v in values.items() if name.startswith(prefix)}


def device_list(values: Mapping[str, str], curtime_wall: float) -> dict[str, Any]:
    """A legacy DeviceList document: the PVS, its meters, then its inverters."""
    curtime = pvs_time(curtime_wall)
    groups = group_devices(values)
    devices = [supervisor_device(info_fields(values), curtime)]
    devices.extend(meter_device(fields, curtime) for fields in groups.get("meter", []))
    devices.extend(inverter_device(fields, curtime) for fields in groups.get("inverter", []))
    return {"devices": devices, "result": "succeed"}


def start(supervisor_info: Mapping[str, Any]) -> dict[str, Any]:
    """Command=Start from `supervisor/info`: the same supervisor fields the legacy answer had."""
    supervisor = supervisor_info.get("supervisor")
    if not isinstance(supervisor, dict):
        supervisor = {}
    keys = ("FWVER", "MODEL", "SERIAL", "SWVER")
    return {"result": "succeed", "supervisor": {k: supervisor[k] for k in keys if k in supervisor}}


def get_comm(interfaces: Mapping[str, Any], wall: float) -> dict[str, Any]:
    """Command=Get_Comm from `communication/interfaces`."""
    listed = interfaces.get("interfaces")
    items = listed if isinstance(listed, list) else []
    up = [item for item in items if isinstance(item, dict) and item.get("internet") == "up"]
    system = {
        "interface": up[0].get("interface", "") if up else "",
        "internet": "up" if up else "down",
        "sms": up[0].get("sms", "unreachable") if up else "unreachable",
    }
    return {
        "networkstatus": {"interfaces": items, "system": system, "ts": str(int(wall))},
        "result": "succeed",
    }


def dumps(document: Mapping[str, Any]) -> bytes:
    """The document printed as the PVS prints JSON."""
    return cjson.dumps(dict(document)).encode()
