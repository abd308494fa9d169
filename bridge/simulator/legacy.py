"""The legacy dl_cgi answers, shaped like the real PVS's (see shared/fixtures/legacy)."""

from __future__ import annotations

from typing import Any

from bridge.simulator.model import (
    METER_PERIOD,
    SUPERVISOR_PERIOD,
    Site,
    pvs_time,
)


def _fmt(value: float, digits: int = 4) -> str:
    """Metric values are strings with up to `digits` decimals, trailing zeros dropped."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def device_list(site: Site, swver: str) -> dict[str, Any]:
    """Command=DeviceList: the supervisor, both meters, every inverter."""
    now = site.clock.wall()
    curtime = pvs_time(now)
    devices: list[dict[str, Any]] = [supervisor_device(site, swver, now)]
    devices.extend(meter_devices(site, now, curtime))
    devices.extend(
        inverter_device(site, index, now, curtime) for index in range(len(site.inverters))
    )
    return {"devices": devices, "result": "succeed"}


def supervisor_device(site: Site, swver: str, now: float) -> dict[str, Any]:
    """The PVS's own entry, with its data logger counters."""
    uptime = site.uptime()
    return {
        "CURTIME": pvs_time(now),
        "DATATIME": pvs_time(site.measured_at(now, SUPERVISOR_PERIOD)),
        "DETAIL": "detail",
        "DEVICE_TYPE": "PVS",
        "HWVER": "6.0",
        "MODEL": f"PV Supervisor {site.model}",
        "SERIAL": site.serial,
        "STATE": "working",
        "STATEDESCR": "Working",
        "SWVER": swver,
        "dl_comm_err": str(int(uptime // 8)),
        "dl_cpu_load": _fmt(0.3 + 0.2 * abs(((now // 60) % 7) / 7), 2),
        "dl_err_count": "0",
        "dl_flash_avail": str(max(0, 90000 - int(uptime // 3600))),
        "dl_mem_used": str(40000 + int(uptime // 600) % 4000),
        "dl_scan_time": "0",
        "dl_skipped_scans": "0",
        "dl_untransmitted": str(int(now // 300) % 97),
        "dl_uptime": str(int(uptime)),
        "panid": 1234567890,
    }


def _meter_head(serial: str, kind: str, scale: str, curtime: str, measured: str) -> dict[str, Any]:
    """What every meter entry starts with (upper-case properties, in the PVS's order)."""
    return {
        "CAL0": scale,
        "CURTIME": curtime,
        "DATATIME": measured,
        "DESCR": f"Power Meter {serial}",
        "DEVICE_TYPE": "Power Meter",
        "ISDETAIL": True,
        "MODEL": f"{serial[:4]}M0400{kind}",
        "OPERATION": "noop",
        "PORT": "",
        "SERIAL": serial,
        "STATE": "working",
        "STATEDESCR": "Working",
        "SWVER": "3000",
        "TYPE": f"PVS5-METER-{kind.upper()}",
    }


def meter_devices(site: Site, now: float, curtime: str) -> list[dict[str, Any]]:
    """The production ("p") and consumption ("c") meters."""
    measured = pvs_time(site.measured_at(now, METER_PERIOD))
    production = site.production_kw(now)
    net = site.load_kw(now) - production
    imported, exported = site.grid_counters(now)
    producer = {
        **_meter_head(site.production_meter_serial, "p", "50", curtime, measured),
        "ct_scl_fctr": "50",
        "freq_hz": _fmt(60.0 + 0.01 * ((now // 15) % 9 - 4)),
        "net_ltea_3phsum_kwh": _fmt(site.produced_kwh(now), 2),
        "origin": "data_logger",
        "p_3phsum_kw": _fmt(production),
        "q_3phsum_kvar": _fmt(production * 0.15),
        "s_3phsum_kva": _fmt(production * 1.01),
        "tot_pf_rto": _fmt(0.99 if production else 0.0),
    }
    consumer = {
        **_meter_head(site.consumption_meter_serial, "c", "100", curtime, measured),
        "ct_scl_fctr": "100",
        "freq_hz": producer["freq_hz"],
        "i1_a": _fmt(abs(net) * 1000 / 240 / 2, 2),
        "i2_a": _fmt(abs(net) * 1000 / 240 / 2, 2),
        "neg_ltea_3phsum_kwh": _fmt(exported, 2),
        "net_ltea_3phsum_kwh": _fmt(imported - exported, 2),
        "origin": "data_logger",
        "p1_kw": _fmt(net / 2),
        "p2_kw": _fmt(net / 2),
        "p_3phsum_kw": _fmt(net),
        "pos_ltea_3phsum_kwh": _fmt(imported, 2),
        "q_3phsum_kvar": _fmt(-abs(net) * 0.4),
        "s_3phsum_kva": _fmt(abs(net) * 1.1),
        "tot_pf_rto": _fmt(-0.87 if net < 0 else 0.92),
        "v12_v": "240.2",
        "v1n_v": "120.1",
        "v2n_v": "120.1",
    }
    return [producer, consumer]


def inverter_device(site: Site, index: int, now: float, curtime: str) -> dict[str, Any]:
    """One microinverter's entry."""
    inverter = site.inverters[index]
    reading = site.inverter_reading(inverter, now)
    return {
        "CURTIME": curtime,
        "DATATIME": pvs_time(reading["measured_at"]),
        "DESCR": f"Inverter {inverter.serial}",
        "DEVICE_TYPE": "Inverter",
        "ISDETAIL": True,
        "MODEL": "AC_Module_Type_E",
        "MOD_SN": inverter.module_serial,
        "NMPLT_SKU": "",
        "OPERATION": "noop",
        "PORT": "",
        "SERIAL": inverter.serial,
        "STATE": "working" if reading["p_kw"] > 0 else "error",
        "STATEDESCR": "Working" if reading["p_kw"] > 0 else "Error",
        "SWVER": "118079776",
        "TYPE": "SOLARBRIDGE",
        "freq_hz": _fmt(reading["freq"], 2),
        "i_3phsum_a": _fmt(reading["i_ac"], 2),
        "i_mppt1_a": _fmt(reading["i_dc"], 2),
        "ltea_3phsum_kwh": _fmt(reading["energy_kwh"]),
        "origin": "data_logger",
        "p_3phsum_kw": _fmt(reading["p_kw"]),
        "p_mpptsum_kw": _fmt(reading["p_dc"]),
        "stat_ind": "0",
        "t_htsnk_degc": str(round(reading["t_heatsink"])),
        "v_mppt1_v": _fmt(reading["v_dc"], 2),
        "vln_3phavg_v": _fmt(reading["v_ac"], 2),
    }


def start(site: Site, swver: str) -> dict[str, Any]:
    """Command=Start: opens a "configuration session", returns the supervisor."""
    return {
        "result": "succeed",
        "supervisor": {
            "FWVER": "1.0.0",
            "MODEL": site.model,
            "SERIAL": site.serial,
            "SWVER": swver,
        },
    }


def supervisor_info(site: Site, swver: str, build: int | None) -> dict[str, Any]:
    """/cgi-bin/dl_cgi/supervisor/info (no login needed, even on new firmware)."""
    info: dict[str, Any] = {"SWVER": swver, "SERIAL": site.serial, "MODEL": site.model}
    if build is not None:
        info["BUILD"] = build
    info.update({"FWVER": "1.0.0", "WNMODEL": "400", "WNSERIAL": 16, "WNVER": 3000})
    return {"result": "succeed", "supervisor": info}


# What Get_Comm lists: wired WAN up, the rest down, as on a typical installation.
INTERFACES: list[dict[str, Any]] = [
    {
        "interface": "wan",
        "internet": "up",
        "ipaddr": "192.168.20.10",
        "link": "connected",
        "mode": "wan",
        "sms": "reachable",
        "state": "up",
    },
    {
        "interface": "plc",
        "internet": "down",
        "ipaddr": "",
        "link": "disconnected",
        "pairing": "unpaired",
        "sms": "unreachable",
        "speed": 0,
        "state": "down",
    },
    {
        "interface": "sta0",
        "internet": "down",
        "ipaddr": "192.168.21.10",
        "signal": "-74",
        "sms": "unreachable",
        "ssid": "Home Network",
        "status": "connected",
    },
    {
        "interface": "cell",
        "internet": "down",
        "ipaddr": "",
        "is_primary": False,
        "link": "disconnected",
        "modem": "MODEM_OK",
        "provider": "UNKNOWN",
        "signal": 0,
        "sim": "SIM_READY",
        "sms": "unreachable",
        "state": "DOWN",
        "status": "NOT_REGISTERED",
    },
]


def get_comm(site: Site) -> dict[str, Any]:
    """Command=Get_Comm: the PVS's network interfaces."""
    interfaces = [dict(item) for item in INTERFACES]
    return {
        "networkstatus": {
            "interfaces": interfaces,
            "system": {"interface": "wan", "internet": "up", "sms": "reachable"},
            "ts": str(int(site.clock.wall())),
        },
        "result": "succeed",
    }


def grid_profile() -> dict[str, Any]:
    """Command=GridProfileGet."""
    profile_id = "816bf3302d337a42680b996227ddbc46abf9cd05"
    name = "IEEE-1547a-2014 + 2020 CA Rule21"
    return {
        "result": "succeed",
        "active_name": name,
        "active_id": profile_id,
        "pending_name": name,
        "pending_id": profile_id,
        "percent": 100,
        "supported_by": "ALL",
        "status": "success",
    }


def discovery_progress(site: Site) -> dict[str, Any]:
    """Command=GetDiscoveryProgress: discovery finished long ago."""
    return {
        "progress": [
            {"TYPE": "PVS5-METER-P", "PROGR": "100", "NFOUND": "1"},
            {"TYPE": "PVS5-METER-C", "PROGR": "100", "NFOUND": "1"},
            {"TYPE": "MI", "PROGR": "100", "NFOUND": str(len(site.inverters))},
        ],
        "complete": True,
        "result": "succeed",
    }


def device_details(site: Site, serial: str, swver: str) -> dict[str, Any] | None:
    """Command=DeviceDetails&SerialNumber=...: one device, or None when unknown."""
    for device in device_list(site, swver)["devices"]:
        if device.get("SERIAL") == serial:
            return {"devices": [device], "result": "succeed"}
    return None
