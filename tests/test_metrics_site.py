"""/metrics: every device's figures, the site's totals and the bridge's own state, as
prometheus_client renders them, checked against the simulator's own answers and promtool.

The simulator and the bridge share one FakeClock, so the DeviceList fetched straight from
the simulator holds the very figures the bridge read. Expected values are the PVS's
printed digits scaled in decimal (kW x 1000 = W, kWh x 3600000 = J, KiB x 1024 = bytes).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from bridge import __version__
from bridge.clock import FakeClock
from bridge.simulator import firmware2025
from bridge.simulator.model import Site
from bridge.site import Snapshot, parse_device_list, parse_vars
from bridge.site.model import LIVE_TOTALS
from bridge.site.timefmt import parse_legacy
from bridge.web import metrics_figures, metrics_site
from tests.support import (
    DEVICE_LIST,
    FIXTURES,
    GET_COMM,
    BridgeFactory,
    Client,
    Sim,
    SimulatorFactory,
    advance,
    idle,
    pvs_2025,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)"
)

# (sample name, legacy DeviceList key, varserver field, scale, extra labels)
INVERTER = [
    ("pvs_inverter_ac_power_watts", "p_3phsum_kw", "p3phsumKw", 1000),
    ("pvs_inverter_ac_voltage_volts", "vln_3phavg_v", "vln3phavgV", 1),
    ("pvs_inverter_ac_current_amperes", "i_3phsum_a", "i3phsumA", 1),
    ("pvs_inverter_dc_power_watts", "p_mpptsum_kw", "pMppt1Kw", 1000),
    ("pvs_inverter_dc_voltage_volts", "v_mppt1_v", "vMppt1V", 1),
    ("pvs_inverter_dc_current_amperes", "i_mppt1_a", "iMppt1A", 1),
    ("pvs_inverter_energy_joules_total", "ltea_3phsum_kwh", "ltea3phsumKwh", 3_600_000),
    ("pvs_inverter_heatsink_temperature_celsius", "t_htsnk_degc", "tHtsnkDegc", 1),
    ("pvs_inverter_frequency_hertz", "freq_hz", "freqHz", 1),
]
METER = [
    ("pvs_meter_real_power_watts", "p_3phsum_kw", "p3phsumKw", 1000),
    ("pvs_meter_reactive_power_volt_amperes_reactive", "q_3phsum_kvar", "q3phsumKvar", 1000),
    ("pvs_meter_apparent_power_volt_amperes", "s_3phsum_kva", "s3phsumKva", 1000),
    ("pvs_meter_power_factor_ratio", "tot_pf_rto", "totPfRto", 1),
    ("pvs_meter_frequency_hertz", "freq_hz", "freqHz", 1),
    ("pvs_meter_net_energy_joules", "net_ltea_3phsum_kwh", "netLtea3phsumKwh", 3_600_000),
    ("pvs_meter_ct_rating_amperes", "ct_scl_fctr", "ctSclFctr", 1),
]
CONSUMPTION = [
    ("pvs_meter_imported_energy_joules_total", "pos_ltea_3phsum_kwh", "posLtea3phsumKwh",
     3_600_000, {}),
    ("pvs_meter_exported_energy_joules_total", "neg_ltea_3phsum_kwh", "negLtea3phsumKwh",
     3_600_000, {}),
    ("pvs_meter_leg_power_watts", "p1_kw", "p1Kw", 1000, {"leg": "1"}),
    ("pvs_meter_leg_power_watts", "p2_kw", "p2Kw", 1000, {"leg": "2"}),
    ("pvs_meter_leg_current_amperes", "i1_a", "i1A", 1, {"leg": "1"}),
    ("pvs_meter_leg_current_amperes", "i2_a", "i2A", 1, {"leg": "2"}),
    ("pvs_meter_leg_voltage_volts", "v1n_v", "v1nV", 1, {"leg": "1"}),
    ("pvs_meter_leg_voltage_volts", "v2n_v", "v2nV", 1, {"leg": "2"}),
    ("pvs_meter_leg_to_leg_voltage_volts", "v12_v", "v12V", 1, {}),
]  # fmt: skip
SUPERVISOR_LEGACY = [
    ("pvs_supervisor_uptime_seconds", "dl_uptime", 1),
    ("pvs_supervisor_cpu_load", "dl_cpu_load", 1),
    ("pvs_supervisor_memory_used_bytes", "dl_mem_used", 1024),
    ("pvs_supervisor_flash_free_bytes", "dl_flash_avail", 1024),
    ("pvs_supervisor_communication_errors_total", "dl_comm_err", 1),
    ("pvs_supervisor_errors_total", "dl_err_count", 1),
    ("pvs_supervisor_skipped_scans_total", "dl_skipped_scans", 1),
    ("pvs_supervisor_scan_time_seconds", "dl_scan_time", 1),
    ("pvs_supervisor_untransmitted_records", "dl_untransmitted", 1),
]
SUPERVISOR_2025 = [
    ("pvs_supervisor_uptime_seconds", "uptime", 1),
    ("pvs_supervisor_cpu_usage_ratio", "cpu_usage", Decimal("0.01")),
    ("pvs_supervisor_memory_usage_ratio", "ram_usage", Decimal("0.01")),
    ("pvs_supervisor_flash_usage_ratio", "flash_usage", Decimal("0.01")),
]


def exact(text: str, scale: float | Decimal) -> float:
    """The PVS's printed figure in the base unit, scaled in decimal (no float noise)."""
    return float(Decimal(text) * Decimal(scale))


def parse(body: str) -> Samples:
    """Every sample of a scrape by (name, labels), through prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def sample(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def serials(samples: Samples, name: str) -> set[str]:
    return {dict(labels)["serial"] for sample_name, labels in samples if sample_name == name}


def promtool(body: bytes) -> subprocess.CompletedProcess[bytes]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )


async def scrape(bridge: Client) -> str:
    response = await bridge.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return await response.text()


async def pvs_device_list(sim: Sim) -> list[dict[str, Any]]:
    """The DeviceList as the simulated PVS itself answers it (one request to it)."""
    async with sim.session.get(sim.url + DEVICE_LIST) as response:
        devices: list[dict[str, Any]] = (await response.json())["devices"]
        return devices


async def pvs_variables(sim: Sim) -> dict[str, str]:
    """Every /sys variable as the simulated 2025 PVS itself answers it (its own login)."""
    secret = base64.b64encode(f"ssm_owner:{sim.simulator.options.serial[-5:]}".encode())
    headers = {"Authorization": "Basic " + secret.decode()}
    async with sim.session.get(f"{sim.url}/auth?login", headers=headers) as response:
        token = (await response.json())["session"]
    cookie = {"Cookie": f"session={token}"}
    async with sim.session.get(f"{sim.url}/vars?match=/sys/&fmt=obj", headers=cookie) as response:
        values: dict[str, str] = await response.json()
        return values


def by_kind(devices: list[dict[str, Any]], device_type: str) -> list[dict[str, Any]]:
    return [device for device in devices if device["DEVICE_TYPE"] == device_type]


async def test_every_legacy_figure_is_the_pvss_own(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock)
    bridge = await start_bridge(sim.url, clock=clock)
    assert (await bridge.get(DEVICE_LIST)).status == 200
    devices = await pvs_device_list(sim)
    samples = parse(await scrape(bridge))

    inverters, meters = by_kind(devices, "Inverter"), by_kind(devices, "Power Meter")
    assert serials(samples, "pvs_inverter_ac_power_watts") == {d["SERIAL"] for d in inverters}
    assert serials(samples, "pvs_meter_real_power_watts") == {d["SERIAL"] for d in meters}
    for inverter in inverters:
        labels = {"serial": inverter["SERIAL"], "model": inverter["MODEL"]}
        for name, key, _field, scale in INVERTER:
            assert sample(samples, name, **labels) == exact(inverter[key], scale), name
    for meter in meters:
        kind = "consumption" if meter["TYPE"].endswith("-C") else "production"
        labels = {"serial": meter["SERIAL"], "kind": kind}
        figures = METER + (CONSUMPTION if kind == "consumption" else [])
        for name, key, _field, scale, *more in figures:
            extra = more[0] if more else {}
            assert sample(samples, name, **labels, **extra) == exact(meter[key], scale), name
    (pvs,) = by_kind(devices, "PVS")
    for name, key, scale in SUPERVISOR_LEGACY:
        assert sample(samples, name, serial=pvs["SERIAL"]) == exact(pvs[key], scale), name

    for device in devices:
        labels = {"serial": device["SERIAL"], "type": kind_name(device["DEVICE_TYPE"])}
        measured = parse_legacy(device["DATATIME"])
        assert measured is not None
        assert sample(samples, "pvs_device_data_age_seconds", **labels) == clock.wall() - measured
        info = {**labels, "model": device["MODEL"], "firmware": device["SWVER"]}
        assert sample(samples, "pvs_device_info", **info) == 1.0
        assert sample(samples, "pvs_device_working", **labels, state=device["STATE"]) == 1.0

    (production,) = (m for m in meters if m["TYPE"].endswith("-P"))
    (consumption,) = (m for m in meters if m["TYPE"].endswith("-C"))
    pv_w, grid_w = exact(production["p_3phsum_kw"], 1000), exact(consumption["p_3phsum_kw"], 1000)
    assert sample(samples, "pvs_site_pv_power_watts") == pv_w
    assert sample(samples, "pvs_site_grid_power_watts") == grid_w
    assert sample(samples, "pvs_site_load_power_watts") == pytest.approx(pv_w + grid_w)
    pv_j = exact(production["net_ltea_3phsum_kwh"], 3_600_000)
    assert sample(samples, "pvs_site_pv_energy_joules") == pv_j


def kind_name(device_type: str) -> str:
    return {"PVS": "supervisor", "Inverter": "inverter", "Power Meter": "meter"}[device_type]


async def test_every_2025_figure_is_the_pvss_own(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025())
    bridge = await start_bridge(sim.url, clock=clock)
    assert (await bridge.get(DEVICE_LIST)).status == 200
    values = await pvs_variables(sim)
    samples = parse(await scrape(bridge))

    inverters = firmware2025_devices(values, "inverter")
    meters = firmware2025_devices(values, "meter")
    assert len(inverters) == 4 and len(meters) == 2
    assert serials(samples, "pvs_inverter_ac_power_watts") == {d["sn"] for d in inverters}
    assert serials(samples, "pvs_meter_real_power_watts") == {d["sn"] for d in meters}
    for inverter in inverters:
        labels = {"serial": inverter["sn"], "model": inverter["prodMdlNm"]}
        for name, _key, field, scale in INVERTER:
            assert sample(samples, name, **labels) == exact(inverter[field], scale), name
        measured = datetime.fromisoformat(inverter["msmtEps"].replace("Z", "+00:00"))
        age = sample(samples, "pvs_device_data_age_seconds", serial=inverter["sn"], type="inverter")
        assert age == clock.wall() - measured.timestamp()
    for meter in meters:
        kind = "consumption" if meter["prodMdlNm"].endswith("c") else "production"
        labels = {"serial": meter["sn"], "kind": kind}
        figures = METER + (CONSUMPTION if kind == "consumption" else [])
        for name, _key, field, scale, *more in figures:
            extra = more[0] if more else {}
            assert sample(samples, name, **labels, **extra) == exact(meter[field], scale), name
    serial = values["/sys/info/serialnum"]
    for name, field, scale in SUPERVISOR_2025:
        expected = exact(values[f"/sys/info/{field}"], scale)
        assert sample(samples, name, serial=serial) == expected, name
    assert sample(samples, "pvs_bridge_info", version=__version__, pvs_api="2025") == 1.0


def firmware2025_devices(values: dict[str, str], kind: str) -> list[dict[str, str]]:
    """`/sys/devices/<kind>/<i>/<field>` -> one dict of fields per device, in index order."""
    found: dict[int, dict[str, str]] = {}
    prefix = f"/sys/devices/{kind}/"
    for name, value in values.items():
        if name.startswith(prefix):
            index, field = name[len(prefix) :].split("/")
            found.setdefault(int(index), {})[field] = value
    return [found[index] for index in sorted(found)]


async def test_twenty_scrapes_cost_the_pvs_nothing(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock)
    bridge = await start_bridge(sim.url, clock=clock)
    before_any_read = parse(await scrape(bridge))
    assert sample(before_any_read, "pvs_bridge_up") == 1.0
    assert not serials(before_any_read, "pvs_inverter_ac_power_watts")  # nothing read yet
    assert (await sim.stats())["total"] == 0  # and nothing asked for it

    assert (await bridge.get(DEVICE_LIST)).status == 200
    await idle(bridge)
    for _ in range(20):
        assert serials(parse(await scrape(bridge)), "pvs_inverter_ac_power_watts")
    await idle(bridge)
    stats = await sim.stats()
    assert (stats["total"], stats["requests"]) == (1, {"DeviceList": 1})  # the one device read


async def test_the_bridges_own_families_pass_promtool(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock)
    limit = {"enabled": True, "rate": 0.001, "burst": 1, "max_wait": 0.0}
    bridge = await start_bridge(sim.url, clock=clock, rate_limit=limit, cache={"refresh": 10.0})
    assert (await bridge.get(DEVICE_LIST)).headers["X-Cache"] == "MISS"
    assert (await bridge.get(DEVICE_LIST)).headers["X-Cache"] == "HIT"
    assert (await bridge.get(GET_COMM)).status == 429  # needs the PVS, and no token is left
    body = await scrape(bridge)
    samples = parse(body)
    assert sample(samples, "pvs_bridge_up") == 1.0
    assert sample(samples, "pvs_bridge_info", version=__version__, pvs_api="legacy") == 1.0
    assert sample(samples, "pvs_bridge_responses_total", cache="MISS", status="200") == 1.0
    assert sample(samples, "pvs_bridge_responses_total", cache="HIT", status="200") == 1.0
    assert sample(samples, "pvs_bridge_responses_total", cache="NONE", status="429") == 1.0
    assert sample(samples, "pvs_bridge_upstream_requests_total", name="DeviceList") == 1.0
    assert sample(samples, "pvs_bridge_upstream_latency_seconds_count", name="DeviceList") == 1
    latency = "pvs_bridge_upstream_latency_seconds_bucket"
    assert sample(samples, latency, name="DeviceList", le="+Inf") == 1.0
    assert sample(samples, "pvs_bridge_upstream_consecutive_failures") == 0.0
    assert sample(samples, "pvs_bridge_upstream_breaker_state", state="closed") == 1.0
    assert sample(samples, "pvs_bridge_upstream_breaker_state", state="open") == 0.0
    assert sample(samples, "pvs_bridge_upstream_queue_depth") == 0.0
    last = sample(samples, "pvs_bridge_upstream_last_success_timestamp_seconds")
    assert last == clock.wall()
    assert sample(samples, "pvs_bridge_cache_age_seconds", key=DEVICE_LIST) == 0.0
    assert sample(samples, "pvs_bridge_rejected_answers_total") == 0.0
    assert sample(samples, "pvs_bridge_rate_limit_refusals_total") == 1.0
    assert sample(samples, "pvs_reboots_total") == 0.0
    if PROMTOOL is not None:
        checked = promtool(body.encode())
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")

    await sim.fault("error500")
    await advance(clock, bridge, 10.0)  # the refresh-ahead's next read fails
    samples = parse(body := await scrape(bridge))
    assert sample(samples, "pvs_bridge_upstream_failures_total", kind="bad_answer") == 1.0
    assert sample(samples, "pvs_bridge_upstream_consecutive_failures") == 1.0
    assert sample(samples, "pvs_bridge_cache_age_seconds", key=DEVICE_LIST) == 10.0
    assert sample(samples, "pvs_bridge_upstream_requests_total", name="DeviceList") == 2.0
    if PROMTOOL is not None:
        assert promtool(body.encode()).returncode == 0


@needs_promtool
@pytest.mark.parametrize("firmware", ["legacy", "2025"])
async def test_a_real_scrape_passes_promtool(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, firmware: str
) -> None:
    sim = await start_simulator(firmware=firmware)
    bridge = await start_bridge(sim.url)
    assert (await bridge.get(DEVICE_LIST)).status == 200
    body = await (await bridge.get("/metrics")).read()
    assert b"pvs_inverter_ac_power_watts{" in body
    checked = promtool(body)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


async def test_a_pvs_reboot_is_counted(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock)
    bridge = await start_bridge(sim.url, clock=clock, cache={"refresh": 10.0})
    assert (await bridge.get(DEVICE_LIST)).status == 200
    await advance(clock, bridge, 30.0, step=10.0)  # refreshed ahead: the uptime grows
    pvs = sim.simulator.options.serial
    uptime = "pvs_supervisor_uptime_seconds"
    assert sample(parse(await scrape(bridge)), uptime, serial=pvs) == 30.0
    sim.simulator.site.reboot()
    await advance(clock, bridge, 10.0)  # the next read: up for 10 s, after 30 s before
    samples = parse(await scrape(bridge))
    assert sample(samples, "pvs_reboots_total") == 1.0
    assert sample(samples, uptime, serial=pvs) == 10.0


class SiteOnly(Collector):
    """The site's families of one snapshot, alone in a registry (no bridge around them)."""

    def __init__(self, snapshot: Snapshot, wall: float) -> None:
        self.snapshot, self.wall = snapshot, wall

    def collect(self) -> list[Any]:
        return metrics_site.site_families(self.snapshot, self.wall)


def test_a_battery_has_its_families_and_the_totals_are_all_there() -> None:
    wall = 1_700_000_000.0
    values = firmware2025.variables(Site(FakeClock(wall_start=wall), 2), "2025.09", 61845)
    values |= {
        "/sys/devices/ess/0/sn": "BAT001",
        "/sys/devices/ess/0/prodMdlNm": "SPWR-Equinox-model",
        "/sys/devices/ess/0/msmtEps": "2023-11-14T22:13:00Z",
        "/sys/devices/ess/0/p3phsumKw": "-1.2",
        "/sys/devices/ess/0/socVal": "0.85",
        "/sys/devices/ess/0/customerSocVal": "0.8",
        "/sys/devices/ess/0/posLtea3phsumKwh": "500.5",
        "/sys/devices/ess/0/negLtea3phsumKwh": "620.25",
        "/sys/devices/ess/0/vBattV": "52.1",
    }
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SiteOnly(parse_vars(values, wall), wall))
    body = generate_latest(registry)
    samples = parse(body.decode())
    battery = {"serial": "BAT001", "model": "SPWR-Equinox-model"}
    assert sample(samples, "pvs_ess_power_watts", **battery) == -1200.0
    assert sample(samples, "pvs_ess_state_of_charge_ratio", **battery) == 0.85
    assert sample(samples, "pvs_ess_customer_state_of_charge_ratio", **battery) == 0.8
    assert sample(samples, "pvs_ess_discharged_energy_joules_total", **battery) == 1_801_800_000
    assert sample(samples, "pvs_ess_charged_energy_joules_total", **battery) == 2_232_900_000
    assert sample(samples, "pvs_ess_battery_voltage_volts", **battery) == 52.1
    assert sample(samples, "pvs_device_data_age_seconds", serial="BAT001", type="ess") == 20.0
    assert sample(samples, "pvs_site_battery_power_watts") == -1200.0
    assert sample(samples, "pvs_site_battery_state_of_charge_ratio") == 0.8
    assert sample(samples, "pvs_site_battery_energy_joules") == exact("-119.75", 3_600_000)
    # Every live total has its family, and this site has them all.
    assert {figure.source for figure in metrics_figures.TOTALS} == set(LIVE_TOTALS)
    assert {f.family for f in metrics_figures.TOTALS} <= {name for name, _labels in samples}
    if PROMTOOL is not None:
        checked = promtool(body)
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


def test_a_device_listed_twice_is_one_series() -> None:
    document = json.loads((FIXTURES / "legacy" / "DeviceList.json").read_text())
    inverter = next(d for d in document["devices"] if d["DEVICE_TYPE"] == "Inverter")
    document["devices"].append({**inverter, "p_3phsum_kw": "0.1"})  # the PVS glitching
    snapshot = parse_device_list(document, 1_700_000_000.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SiteOnly(snapshot, 1_700_000_000.0))
    body = generate_latest(registry)
    labels = {"serial": inverter["SERIAL"], "model": inverter["MODEL"]}
    expected = exact(inverter["p_3phsum_kw"], 1000)  # the first listed
    assert sample(parse(body.decode()), "pvs_inverter_ac_power_watts", **labels) == expected
    series = [line.rsplit(" ", 1)[0] for line in body.decode().splitlines() if line[:1] != "#"]
    assert len(series) == len(set(series))  # Prometheus refuses a scrape with a duplicate


async def test_scrapes_keep_the_device_list_refreshed_at_one_read_per_interval(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # Prometheus alone (no client polling dl_cgi): its scrapes never reach the PVS, but
    # they are interest in the data, so the refresh goes on at one read per interval
    # instead of stopping after idle_after with the figures growing old.
    clock = FakeClock()
    sim = await start_simulator(clock)
    bridge = await start_bridge(sim.url, clock=clock, cache={"refresh": 10.0, "idle_after": 30.0})
    assert (await bridge.get(DEVICE_LIST)).status == 200
    for _ in range(24):  # two minutes, a scrape every 5 s
        assert (await bridge.get("/metrics")).status == 200
        await clock.advance(5.0)
        await asyncio.sleep(0.01)
    reads = await sim.count("DeviceList")
    assert 11 <= reads <= 1 + 120 // 10
