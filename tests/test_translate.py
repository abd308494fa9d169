"""varserver -> legacy DeviceList (through the site model), field by field, against the
shared fixtures; and the other legacy answers 2025 firmware gets from its new API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge import cjson
from bridge.pvs.translated import get_comm, start
from bridge.site import parse_vars, render_device_list
from bridge.site.timefmt import format_legacy, parse_iso

FIXTURES = Path(__file__).parent / "fixtures"  # copies of the shared fixtures

VARS: dict[str, str] = json.loads((FIXTURES / "varserver" / "vars-obj.json").read_text())
LEGACY: dict[str, Any] = json.loads((FIXTURES / "legacy" / "DeviceList.json").read_text())
CURTIME_WALL = 1557593633.0  # 2019-05-11 16:53:53 UTC, the fixture's CURTIME


# docs/pvs-api.md section 3: what a consumption meter adds, varserver -> legacy name.
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
# The supervisor's data-logger counters the new API has no equivalent of.
DL_ZERO_FIELDS = (
    "dl_comm_err",
    "dl_err_count",
    "dl_flash_avail",
    "dl_mem_used",
    "dl_scan_time",
    "dl_skipped_scans",
    "dl_untransmitted",
)


def device_list(values: dict[str, str], wall: float) -> dict[str, Any]:
    """The legacy DeviceList a 2025 PVS's variables become."""
    return render_device_list(parse_vars(values, wall))


def by_serial(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {device["SERIAL"]: device for device in document["devices"]}


@pytest.fixture
def translated() -> dict[str, Any]:
    return device_list(VARS, CURTIME_WALL)


def test_every_device_is_there_in_legacy_order(translated: dict[str, Any]) -> None:
    types = [device["DEVICE_TYPE"] for device in translated["devices"]]
    inverters = {name.split("/")[4] for name in VARS if name.startswith("/sys/devices/inverter/")}
    assert types == ["PVS", "Power Meter", "Power Meter"] + ["Inverter"] * len(inverters)
    assert translated["result"] == "succeed"


@pytest.mark.parametrize(
    "field",
    [
        "p_3phsum_kw",
        "ltea_3phsum_kwh",
        "vln_3phavg_v",
        "i_3phsum_a",
        "freq_hz",
        "t_htsnk_degc",
        "p_mpptsum_kw",
        "v_mppt1_v",
        "i_mppt1_a",
        "DATATIME",
        "DEVICE_TYPE",
        "MODEL",
        "SERIAL",
        "STATE",
        "ISDETAIL",
        "origin",
    ],
)
def test_inverter_fields_match_the_legacy_fixture(translated: dict[str, Any], field: str) -> None:
    legacy, ours = by_serial(LEGACY), by_serial(translated)
    inverters = [serial for serial, device in legacy.items() if device["DEVICE_TYPE"] == "Inverter"]
    assert inverters
    for serial in inverters:
        assert ours[serial][field] == legacy[serial][field], (serial, field)


@pytest.mark.parametrize(
    "field",
    [
        "p_3phsum_kw",
        "net_ltea_3phsum_kwh",
        "q_3phsum_kvar",
        "s_3phsum_kva",
        "tot_pf_rto",
        "freq_hz",
        "ct_scl_fctr",
        "CAL0",
        "TYPE",
        "DESCR",
        "DEVICE_TYPE",
        "MODEL",
        "DATATIME",
    ],
)
def test_meter_fields_match_the_legacy_fixture(translated: dict[str, Any], field: str) -> None:
    legacy, ours = by_serial(LEGACY), by_serial(translated)
    for serial in ("PVS6M01234567p", "PVS6M01234567c"):
        assert ours[serial][field] == legacy[serial][field], (serial, field)


def test_inverter_descr_names_its_own_serial(translated: dict[str, Any]) -> None:
    # (The legacy fixture's third inverter has a DESCR that names another serial.)
    for device in translated["devices"][3:]:
        assert device["DESCR"] == "Inverter " + device["SERIAL"]


def test_consumption_meter_gets_its_extra_fields_production_does_not() -> None:
    values = {
        "/sys/devices/meter/0/sn": "M1p",
        "/sys/devices/meter/0/prodMdlNm": "PVS6M0400p",
        "/sys/devices/meter/0/v1nV": "120.1",
        "/sys/devices/meter/1/sn": "M1c",
        "/sys/devices/meter/1/prodMdlNm": "PVS6M0400c",
        **{f"/sys/devices/meter/1/{var}": str(i) for i, var in enumerate(CONSUMPTION_METER_FIELDS)},
    }
    devices = by_serial(device_list(values, CURTIME_WALL))
    assert "v1n_v" not in devices["M1p"]
    consumption = devices["M1c"]
    for i, (var, legacy_name) in enumerate(CONSUMPTION_METER_FIELDS.items()):
        assert consumption[legacy_name] == str(i), var
    assert consumption["TYPE"] == "PVS5-METER-C" and devices["M1p"]["TYPE"] == "PVS5-METER-P"


def test_pvs_device_from_sys_info(translated: dict[str, Any]) -> None:
    pvs = translated["devices"][0]
    assert pvs["DEVICE_TYPE"] == "PVS"
    assert pvs["MODEL"] == "PV Supervisor PVS6"
    assert pvs["SERIAL"] == VARS["/sys/info/serialnum"]
    assert pvs["SWVER"] == VARS["/sys/info/sw_rev"]
    assert pvs["HWVER"] == VARS["/sys/info/hwrev"]
    assert pvs["dl_uptime"] == "12894"  # int() of "12894.51"
    assert pvs["dl_cpu_load"] == "0.27"  # "27.0" percent as a fraction
    assert pvs["STATE"] == "working"
    for name in DL_ZERO_FIELDS:
        assert pvs[name] == "0"
    assert pvs["CURTIME"] == "2019,05,11,16,53,53"


def test_every_device_carries_curtime_and_values_stay_strings(translated: dict[str, Any]) -> None:
    for device in translated["devices"]:
        assert device["CURTIME"] == "2019,05,11,16,53,53"
        for key, value in device.items():
            if key != "ISDETAIL":
                assert isinstance(value, str), key


def test_printed_like_the_pvs_so_line_filtering_clients_still_parse_it() -> None:
    body = cjson.dumps(device_list(VARS, CURTIME_WALL))
    assert body.startswith('{\n\t"devices":\t[{\n')
    kept = [line for line in body.splitlines() if line[:1] in ("{", "\t", "}")]
    assert json.loads("\n".join(kept)) == json.loads(body)


@pytest.mark.parametrize(
    ("iso", "pvs"),
    [
        ("2025-06-28T03:35:00Z", "2025,06,28,03,35,00"),
        ("2025-06-28T05:35:00+02:00", "2025,06,28,03,35,00"),
        ("garbage", None),
    ],
)
def test_msmteps_to_datatime(iso: str, pvs: str | None) -> None:
    moment = parse_iso(iso)
    assert (None if moment is None else format_legacy(moment)) == pvs


def test_missing_msmteps_falls_back_to_curtime() -> None:
    values = {"/sys/devices/inverter/0/sn": "E1", "/sys/devices/inverter/0/p3phsumKw": "0.1"}
    inverter = device_list(values, CURTIME_WALL)["devices"][1]
    assert inverter["DATATIME"] == inverter["CURTIME"]


def test_start_and_get_comm_from_their_new_firmware_equivalents() -> None:
    info = json.loads((FIXTURES / "varserver" / "supervisor-info.json").read_text())
    started = start(info)
    assert started == {
        "result": "succeed",
        "supervisor": {
            "FWVER": "1.0.0",
            "MODEL": "PVS6",
            "SERIAL": "ZT01234567890ABCDE",
            "SWVER": "2025.09, Build 61845",
        },
    }
    comm = get_comm(
        {"interfaces": [{"interface": "wan", "internet": "up", "sms": "reachable"}]}, 5.0
    )
    assert comm["result"] == "succeed"
    assert comm["networkstatus"]["system"] == {
        "interface": "wan",
        "internet": "up",
        "sms": "reachable",
    }
    assert comm["networkstatus"]["ts"] == "5"
