"""The site model (bridge/site): parse either firmware's data, render either API's shape.

Pure tests: no server, no event loop. The fixtures are copies of the shared ones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import cjson
from bridge.clock import FakeClock
from bridge.simulator import firmware2025
from bridge.simulator import legacy as sim_legacy
from bridge.simulator.model import Site
from bridge.site import (
    Device,
    Kind,
    LiveTotals,
    Reading,
    SiteDataError,
    Snapshot,
    derive_totals,
    figures,
    parse_device_list,
    parse_vars,
    render_device_details,
    render_device_list,
    render_vars,
    timefmt,
)

FIXTURES = Path(__file__).parent / "fixtures"
LEGACY_TEXT = (FIXTURES / "legacy" / "DeviceList.json").read_text()
LEGACY: dict[str, Any] = json.loads(LEGACY_TEXT)
VARS: dict[str, str] = json.loads((FIXTURES / "varserver" / "vars-obj.json").read_text())
CURTIME_WALL = 1557593633.0  # 2019-05-11 16:53:53 UTC, the fixtures' CURTIME
SWVER, BUILD = "2025.09, Build 61845", 61845
# Simulated moments: mid-afternoon, evening peak and night at the site (UTC-8).
SIM_WALLS = [1_700_000_000.0, 1_700_000_000.0 + 4.8 * 3600, 1_700_000_000.0 + 12 * 3600]


def wall(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def sim_site(wall_start: float) -> Site:
    return Site(FakeClock(wall_start=wall_start), 4)


def site_vars(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k.startswith(("/sys/info/", "/sys/devices/"))}


def fields_by_kind(values: dict[str, str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name in values:
        parts = name.split("/")
        if name.startswith("/sys/devices/"):
            found.setdefault(parts[3], set()).add(parts[5])
    return found


# --- round trips ---------------------------------------------------------------------


def test_legacy_fixture_round_trips_byte_for_byte() -> None:
    assert cjson.dumps(LEGACY) == LEGACY_TEXT  # the fixture is in the PVS's print form
    rendered = render_device_list(parse_device_list(LEGACY, CURTIME_WALL + 7))
    assert rendered == LEGACY
    assert cjson.dumps(rendered) == LEGACY_TEXT


def test_varserver_fixture_round_trips() -> None:
    rendered = site_vars(render_vars(parse_vars(VARS, CURTIME_WALL)))
    assert rendered == site_vars(VARS)
    devices = [name for name in VARS if name.startswith("/sys/devices/")]
    assert [name for name in rendered if name.startswith("/sys/devices/")] == devices


def test_simulator_2025_variables_round_trip() -> None:
    values = firmware2025.variables(sim_site(SIM_WALLS[0]), SWVER, BUILD)
    assert site_vars(render_vars(parse_vars(values, SIM_WALLS[0]))) == site_vars(values)


def test_legacy_fixture_as_varserver_has_the_varserver_shape() -> None:
    ours = fields_by_kind(render_vars(parse_device_list(LEGACY, CURTIME_WALL)))
    theirs = fields_by_kind(VARS)
    assert set(ours) == set(theirs) == {"inverter", "meter"}
    for kind in theirs:
        assert ours[kind] == theirs[kind], kind
    info = {name for name in render_vars(parse_device_list(LEGACY, CURTIME_WALL))}
    assert {"/sys/info/serialnum", "/sys/info/model", "/sys/info/uptime"} <= info


def test_legacy_supervisor_as_varserver_info() -> None:
    values = render_vars(parse_device_list(LEGACY, CURTIME_WALL))
    assert values["/sys/info/serialnum"] == "ZT01234567890ABCDEF"
    assert values["/sys/info/model"] == "PVS6"  # without "PV Supervisor "
    assert values["/sys/info/uptime"] == "2181"
    assert values["/sys/info/cpu_usage"] == "57"  # the legacy fraction as a percentage
    assert values["/sys/info/hwrev"] == "6.0"
    assert values["/sys/devices/inverter/2/sn"] == "E00121852034919"
    assert values["/sys/devices/inverter/0/msmtEps"] == "2019-05-11T16:52:00Z"


# --- compatibility with the translator -----------------------------------------------


# What the translator printed before the site model replaced it, kept as the reference.
TRANSLATED: list[dict[str, Any]] = json.loads(
    (FIXTURES / "varserver" / "translated.json").read_text()
)["cases"]


@pytest.mark.parametrize("case", TRANSLATED, ids=[case["name"] for case in TRANSLATED])
def test_varserver_data_renders_byte_for_byte_as_the_translator_did(case: dict[str, Any]) -> None:
    ours = render_device_list(parse_vars(case["values"], case["wall"]))
    assert cjson.dumps(ours) == case["device_list"]


def test_the_reference_cases_cover_the_simulator_at_each_moment() -> None:
    # The simulator's variables still have the shape the reference cases were made from.
    for wall_start in SIM_WALLS:
        values = firmware2025.variables(sim_site(wall_start), SWVER, BUILD)
        (case,) = [case for case in TRANSLATED if case["wall"] == wall_start]
        assert {name for name in values if "/devices/" in name} == {
            name for name in case["values"] if "/devices/" in name
        }


def test_device_details_is_one_entry_of_the_list() -> None:
    snapshot = parse_vars(VARS, CURTIME_WALL)
    listed = render_device_list(snapshot)["devices"]
    for entry in listed:
        details = render_device_details(snapshot, entry["SERIAL"])
        assert details == {"devices": [entry], "result": "succeed"}
    assert render_device_details(snapshot, "NO-SUCH-SERIAL") is None


def test_varserver_battery_and_switch_are_kept_but_not_invented_in_the_legacy_list() -> None:
    values = dict(VARS)
    values.update(
        {
            "/sys/devices/ess/0/sn": "BAT001",
            "/sys/devices/ess/0/prodMdlNm": "SPWR-Equinox-model",
            "/sys/devices/ess/0/msmtEps": "2019-05-11T16:53:00Z",
            "/sys/devices/ess/0/p3phsumKw": "-1.2",
            "/sys/devices/ess/0/socVal": "0.85",
            "/sys/devices/ess/0/customerSocVal": "0.8",
            "/sys/devices/ess/0/posLtea3phsumKwh": "500.5",
            "/sys/devices/ess/0/negLtea3phsumKwh": "620.25",
            "/sys/devices/ess/0/opMode": "SELF_CONSUMPTION",
            "/sys/devices/transfer_switch/0/sn": "MIDC01",
            "/sys/devices/transfer_switch/0/prodMdlNm": "MIDC",
            "/sys/devices/transfer_switch/0/midStEnum": "grid",
            "/sys/devices/transfer_switch/0/tDegc": "31.5",
        }
    )
    snapshot = parse_vars(values, CURTIME_WALL)
    (battery,) = snapshot.storage
    assert battery.reading("soc_val") == 0.85
    assert battery.readings["soc_val"].unit == "ratio"
    assert battery.attribute("op_mode") == "SELF_CONSUMPTION"
    (switch,) = snapshot.others
    assert switch.readings["t_degc"] == Reading(31.5, "31.5", "degC")
    assert site_vars(render_vars(snapshot)) == site_vars(values)
    # Not invented: the legacy list is the one without the battery and the switch.
    assert render_device_list(snapshot) == render_device_list(parse_vars(VARS, CURTIME_WALL))
    assert snapshot.totals.ess_p == -1.2
    assert snapshot.totals.ess_en == pytest.approx(500.5 - 620.25)
    assert snapshot.totals.soc == pytest.approx(80.0)


# --- both firmwares describe the same site -------------------------------------------


@pytest.mark.parametrize("wall_start", SIM_WALLS)
def test_simulator_legacy_and_2025_agree(wall_start: float) -> None:
    site = sim_site(wall_start)
    old = parse_device_list(sim_legacy.device_list(site, SWVER), wall_start)
    new = parse_vars(firmware2025.variables(site, SWVER, BUILD), wall_start)
    assert old.serials == new.serials
    assert len(old.serials) == 1 + 2 + 4
    for inverter in old.inverters:
        twin = new.find(inverter.serial)
        assert twin is not None and twin.kind is Kind.INVERTER
        for name in ("p_3phsum_kw", "ltea_3phsum_kwh"):
            assert inverter.reading(name) == twin.reading(name), (inverter.serial, name)
        assert inverter.measured_at == twin.measured_at
    assert old.totals == new.totals


@pytest.mark.parametrize("wall_start", SIM_WALLS)
def test_totals_match_the_simulated_site(wall_start: float) -> None:
    site = sim_site(wall_start)
    values = firmware2025.variables(site, SWVER, BUILD)
    for snapshot in (
        parse_device_list(sim_legacy.device_list(site, SWVER), wall_start),
        parse_vars(values, wall_start),
    ):
        totals = snapshot.totals
        assert totals.site_load_p == pytest.approx(site.load_kw(wall_start), abs=2e-4)
        assert totals.pv_p == pytest.approx(site.production_kw(wall_start), abs=1e-4)
        assert totals.net_p is not None and totals.pv_p is not None
        assert totals.ess_p is None and totals.soc is None  # no battery simulated
    livedata = render_vars(parse_vars(values, wall_start))
    for name in ("pv_p", "pv_en", "net_p", "net_en"):
        path = "/sys/livedata/" + name
        assert float(livedata[path]) == pytest.approx(float(values[path]), abs=1e-4), name


def test_totals_of_the_legacy_fixture() -> None:
    totals = parse_device_list(LEGACY, CURTIME_WALL).totals
    assert totals.pv_p == 1.9867 and totals.net_p == -1.55  # net < 0: exporting
    assert totals.site_load_p == pytest.approx(0.4367)
    assert totals.pv_en == 198.92 and totals.net_en == -65.65
    assert totals.site_load_en == pytest.approx(133.27)


def test_pv_totals_fall_back_to_the_inverters_without_a_production_meter() -> None:
    snapshot = parse_device_list(LEGACY, CURTIME_WALL)
    consumption = [meter for meter in snapshot.meters if meter.is_consumption]
    totals = derive_totals(snapshot.supervisor, snapshot.inverters, consumption, ())
    assert totals.pv_p == pytest.approx(0.125 + 0.1271 + 0.125)
    assert totals.pv_en == pytest.approx(13.0464 + 13.0527 + 12.7868)
    assert totals.site_load_p == pytest.approx(0.3771 - 1.55)
    assert derive_totals(None, (), (), ()) == LiveTotals()


# --- times ---------------------------------------------------------------------------


def test_datatime_and_msmteps_become_measured_at() -> None:
    old = parse_device_list(LEGACY, CURTIME_WALL)
    new = parse_vars(VARS, CURTIME_WALL)
    assert old.pvs_time == CURTIME_WALL
    assert new.pvs_time == CURTIME_WALL  # the moment of asking, as the translator did
    inverter = old.find("E00000000000001")
    assert inverter is not None and inverter.measured_at == wall(2019, 5, 11, 16, 52, 0)
    meter = new.find("PVS6M01234567p")
    assert meter is not None and meter.measured_at == wall(2019, 5, 11, 16, 53, 45)
    assert old.supervisor is not None
    assert old.supervisor.measured_at == wall(2019, 5, 11, 16, 50, 0)
    assert new.supervisor is not None and new.supervisor.measured_at is None


def test_odd_times_are_kept_as_given() -> None:
    device = {"DEVICE_TYPE": "Inverter", "SERIAL": "X", "MODEL": "M", "STATE": "error"}
    device["DATATIME"] = "2019,5,11,16,52,0"  # parses, but prints differently
    document = {"devices": [device], "result": "succeed"}
    snapshot = parse_device_list(document, CURTIME_WALL)
    assert snapshot.inverters[0].measured_at == wall(2019, 5, 11, 16, 52, 0)
    assert render_device_list(snapshot) == document
    values = {"/sys/devices/inverter/0/sn": "X", "/sys/devices/inverter/0/msmtEps": "soon"}
    snapshot = parse_vars(values, CURTIME_WALL)
    assert snapshot.inverters[0].measured_at is None
    assert site_vars(render_vars(snapshot)) == {
        "/sys/devices/inverter/0/sn": "X",
        "/sys/devices/inverter/0/msmtEps": "soon",
    }


@pytest.mark.parametrize("moment", [0.0, 1557593520.0, 1_751_081_700.0, 4_102_444_799.0])
def test_time_formats_round_trip(moment: float) -> None:
    assert timefmt.parse_legacy(timefmt.format_legacy(moment)) == moment
    assert timefmt.parse_iso(timefmt.format_iso(moment)) == moment


def test_time_parsers_refuse_what_is_not_a_time() -> None:
    for text in ("", "2019,05,11", "2019,13,01,00,00,00", "a,b,c,d,e,f"):
        assert timefmt.parse_legacy(text) is None, text
    assert timefmt.parse_iso("n/a") is None
    assert timefmt.parse_iso("2025-06-28T03:35:00Z") == wall(2025, 6, 28, 3, 35, 0)
    assert timefmt.parse_iso("2025-06-28T05:35:00+02:00") == wall(2025, 6, 28, 3, 35, 0)


# --- the model -----------------------------------------------------------------------


def test_readings_keep_the_printed_text_and_take_units_from_the_name() -> None:
    snapshot = parse_device_list(LEGACY, CURTIME_WALL)
    inverter = snapshot.find("E00000000000001")
    assert inverter is not None
    assert inverter.readings["p_3phsum_kw"] == Reading(0.125, "0.125", "kW")
    assert inverter.readings["ltea_3phsum_kwh"].unit == "kWh"
    assert inverter.readings["t_htsnk_degc"].unit == "degC"
    assert inverter.attribute("MOD_SN") == "P07M01234567"
    assert inverter.attribute("ISDETAIL") is True
    assert inverter.attribute("NMPLT_SKU") == ""  # not a number: an attribute
    assert snapshot.supervisor is not None
    assert snapshot.supervisor.readings["dl_uptime"].unit == "s"
    assert snapshot.supervisor.attribute("panid") == 1234567890  # not a string: kept as is


def test_a_blank_metric_stays_an_attribute() -> None:
    device = {"DEVICE_TYPE": "Inverter", "SERIAL": "X", "MODEL": "M", "STATE": "working"}
    device |= {"p_3phsum_kw": "", "freq_hz": "60.01", "stat_ind": "n/a"}
    snapshot = parse_device_list({"devices": [device], "result": "succeed"}, CURTIME_WALL)
    (inverter,) = snapshot.inverters
    assert set(inverter.readings) == {"freq_hz"}
    assert inverter.reading("p_3phsum_kw") is None
    assert inverter.attribute("p_3phsum_kw") == ""
    assert render_device_list(snapshot)["devices"] == [dict(sorted(device.items()))]


def test_snapshot_helpers_and_meter_roles() -> None:
    snapshot = parse_device_list(LEGACY, CURTIME_WALL)
    listed = [device["SERIAL"] for device in LEGACY["devices"]]
    assert [device.serial for device in snapshot.devices] == listed
    assert snapshot.serials == frozenset(listed)
    assert snapshot.find("nope") is None
    production, consumption = snapshot.meters
    assert production.is_production and not production.is_consumption
    assert consumption.is_consumption and not consumption.is_production
    assert not snapshot.inverters[0].is_production
    vars_meters = parse_vars(VARS, CURTIME_WALL).meters
    assert [meter.is_consumption for meter in vars_meters] == [False, True]


def test_snapshot_is_immutable() -> None:
    snapshot = parse_device_list(LEGACY, CURTIME_WALL)
    inverter = snapshot.inverters[0]
    with pytest.raises(AttributeError):
        inverter.serial = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        inverter.readings["p_3phsum_kw"] = Reading(1, "1", "kW")  # type: ignore[index]
    given = {"p_3phsum_kw": Reading(1.0, "1", "kW")}
    device = Device(Kind.INVERTER, "S", "M", "working", None, given, ())
    given.clear()  # the caller's dict is copied, not shared
    assert device.reading("p_3phsum_kw") == 1.0


def test_no_devices_list_is_a_clear_error() -> None:
    with pytest.raises(SiteDataError, match="devices"):
        parse_device_list({"result": "succeed"}, CURTIME_WALL)
    with pytest.raises(SiteDataError, match="device 1"):
        parse_device_list({"devices": [{}, "junk"]}, CURTIME_WALL)
    assert issubclass(SiteDataError, ValueError)


@pytest.mark.parametrize(
    ("device_type", "kind"),
    [
        ("PVS", Kind.SUPERVISOR),
        ("Inverter", Kind.INVERTER),
        ("Power Meter", Kind.METER),
        ("Energy Storage System", Kind.ESS),
        ("ESS BMS", Kind.ESS),
        ("ESS Hub", Kind.ESS),
        ("HUB+", Kind.ESS),
        ("Battery", Kind.ESS),
        ("SunVault", Kind.ESS),
        ("Wireless Gateway", Kind.OTHER),
        ("Gateway", Kind.OTHER),
    ],
)
def test_legacy_device_types(device_type: str, kind: Kind) -> None:
    device = {"DEVICE_TYPE": device_type, "SERIAL": "S1", "MODEL": "M", "STATE": "working"}
    document = {"devices": [device], "result": "succeed"}
    snapshot = parse_device_list(document, CURTIME_WALL)
    (parsed,) = snapshot.devices
    assert parsed.kind is kind
    assert render_device_list(snapshot) == document  # kept and printed back as given


def test_varserver_supervisor_keeps_its_info_but_not_the_wifi_key() -> None:
    values = dict(VARS) | {"/sys/info/wpa_key": "secret-key"}
    snapshot = parse_vars(values, CURTIME_WALL)
    pvs = snapshot.supervisor
    assert pvs is not None
    assert pvs.model == "PV Supervisor PVS6"
    assert pvs.readings["dl_uptime"] == Reading(12894.51, "12894.51", "s")
    assert pvs.reading("cpu_usage") == 27.0 and pvs.reading("dl_cpu_load") == 0.27
    assert pvs.attribute("HWVER") == "6.02" and pvs.attribute("lmac") == "00:22:f2:00:00:01"
    assert "secret-key" not in json.dumps(render_vars(snapshot))
    assert "secret-key" not in cjson.dumps(render_device_list(snapshot))


def test_figure_names_and_units() -> None:
    assert figures.device_name("p3phsumKw") == "p_3phsum_kw"
    assert figures.device_name("maxTBattCellDegc") == "max_t_batt_cell_degc"
    assert figures.device_field("p_mpptsum_kw", known_only=True) == "pMppt1Kw"
    assert figures.device_field("stat_ind", known_only=True) is None  # legacy only
    assert figures.device_name("newFieldKw") == "new_field_kw"  # unknown: derived
    assert figures.device_field("new_field_kw", known_only=False) == "newFieldKw"
    assert figures.device_name("odd_name") == "odd_name"
    units = {name: figures.unit_of(name) for name in ("q_3phsum_kvar", "s_3phsum_kva")}
    assert units == {"q_3phsum_kvar": "kvar", "s_3phsum_kva": "kVA"}
    assert figures.unit_of("tot_pf_rto") == "ratio"
    assert figures.unit_of("freq_hz") == "Hz"
    assert figures.unit_of("v12_v") == "V" and figures.unit_of("i1_a") == "A"
    assert figures.unit_of("stat_ind") == ""
    assert figures.as_number("nan") is None and figures.as_number("-0.5") == -0.5


def test_unknown_varserver_fields_survive() -> None:
    values = {
        "/sys/devices/inverter/0/sn": "E1",
        "/sys/devices/inverter/0/prodMdlNm": "AC_Module_Type_H",
        "/sys/devices/inverter/0/p3phsumKw": "0.2",
        "/sys/devices/inverter/0/pMppt2Kw": "0.1",
        "/sys/devices/inverter/0/fwVer": "4.1.2",
    }
    snapshot = parse_vars(values, CURTIME_WALL)
    (inverter,) = snapshot.inverters
    assert inverter.readings["p_mppt2_kw"] == Reading(0.1, "0.1", "kW")
    assert inverter.attribute("fw_ver") == "4.1.2"
    assert site_vars(render_vars(snapshot)) == values
    printed = render_device_list(snapshot)["devices"][1]
    assert "p_mppt2_kw" not in printed and "fw_ver" not in printed  # as the translator did


# --- any legacy-like device survives parse -> render ---------------------------------

UPPER_KEYS = st.from_regex(r"[A-Z][A-Z0-9_]{0,11}", fullmatch=True)
LOWER_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
NUMBERS = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda x: f"{x:.4f}"),
    st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,5})?", fullmatch=True),
)
VALUES = st.one_of(NUMBERS, st.text(max_size=20), st.sampled_from(["", "0", "nan", " 1"]))
DEVICE_TYPES = st.one_of(
    st.sampled_from(["PVS", "Inverter", "Power Meter", "Energy Storage System", "ESS BMS"]),
    st.text(max_size=12),
)
TIMES = st.one_of(
    st.integers(0, 4_102_444_799).map(lambda t: timefmt.format_legacy(float(t))),
    st.text(max_size=20),
)


@st.composite
def legacy_devices(draw: st.DrawFn) -> dict[str, Any]:
    device: dict[str, Any] = draw(st.dictionaries(LOWER_KEYS, VALUES, max_size=12))
    device.update(draw(st.dictionaries(UPPER_KEYS, VALUES, max_size=6)))
    device.update(
        DEVICE_TYPE=draw(DEVICE_TYPES),
        SERIAL=draw(st.text(max_size=16)),
        MODEL=draw(st.text(max_size=16)),
        STATE=draw(st.sampled_from(["working", "error", ""])),
    )
    for key in ("DATATIME", "CURTIME"):
        if draw(st.booleans()):
            device[key] = draw(TIMES)
    if draw(st.booleans()):
        device["ISDETAIL"] = draw(st.booleans())
    if draw(st.booleans()):
        device["panid"] = draw(st.integers())
    return dict(sorted(device.items()))


@settings(max_examples=300, deadline=None)
@given(legacy_devices())
def test_any_legacy_device_survives_parse_and_render(device: dict[str, Any]) -> None:
    document = {"devices": [device], "result": "succeed"}
    snapshot = parse_device_list(document, CURTIME_WALL)
    rendered = render_device_list(snapshot)
    assert rendered == document
    assert list(rendered["devices"][0]) == list(device)  # the PVS's sorted key order
    assert cjson.dumps(rendered) == cjson.dumps(document)
    (parsed,) = snapshot.devices
    for name, reading in parsed.readings.items():
        assert reading.text == device[name] and reading.value == float(device[name])


@settings(max_examples=50, deadline=None)
@given(st.lists(legacy_devices(), max_size=4))
def test_legacy_devices_join_the_fixture(extra: list[dict[str, Any]]) -> None:
    document = {"devices": [*LEGACY["devices"], *extra], "result": "succeed"}
    snapshot = parse_device_list(document, CURTIME_WALL)
    rendered = render_device_list(snapshot)["devices"]
    key = json.dumps  # order across kinds is the PVS's own; compare as multisets
    assert sorted(map(key, rendered)) == sorted(map(key, document["devices"]))
    assert isinstance(snapshot, Snapshot)
