"""Which PVS figure goes to which Prometheus family, in which base unit.

Every figure sunpower-pvs-exporter 1.0 exposed, for every device, plus the meters' legs
and lifetime import/export, the battery, and the site's live totals. Base units: power in
watts (W), energy in joules (J; 1 kWh = 3,600,000 J), sizes in bytes, ratios as
fractions; each HELP names the unit and the PVS figure it comes from, with its scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bridge.site import Kind

ONE, KILO, KIBI = Decimal(1), Decimal(1000), Decimal(1024)
KWH = Decimal(3_600_000)  # joules in a kilowatt-hour
PERCENT = Decimal("0.01")
SCALE_NOTES = {KILO: " x 1000", KWH: " x 3600000", KIBI: " KiB x 1024", PERCENT: " % / 100"}
# A per-leg family's sources, named once in its HELP.
LEG_SOURCES = {
    "pvs_meter_leg_power_watts": "p1_kw, p2_kw x 1000",
    "pvs_meter_leg_current_amperes": "i1_a, i2_a",
    "pvs_meter_leg_voltage_volts": "v1n_v, v2n_v",
}


@dataclass(frozen=True)
class Figure:
    """One PVS figure (a reading's name, or a LiveTotals field) and the family it goes to."""

    source: str
    family: str  # a counter's name without `_total` (prometheus_client appends it)
    help: str
    scale: Decimal = ONE
    counter: bool = False
    leg: str | None = None  # a meter's per-leg value: the `leg` label

    @property
    def legs(self) -> tuple[str, ...]:
        """The `leg` label's value, if the figure has one."""
        return () if self.leg is None else (self.leg,)


def _f(
    source: str,
    family: str,
    text: str,
    scale: Decimal = ONE,
    *,
    counter: bool = False,
    leg: str | None = None,
) -> Figure:
    how = f"{source}{SCALE_NOTES.get(scale, '')}" if leg is None else LEG_SOURCES[family]
    return Figure(source, family, f"{text} (from {how}).", scale, counter, leg)


INVERTER = (
    _f("p_3phsum_kw", "pvs_inverter_ac_power_watts", "AC power output in watts", KILO),
    _f("vln_3phavg_v", "pvs_inverter_ac_voltage_volts", "AC voltage in volts"),
    _f("i_3phsum_a", "pvs_inverter_ac_current_amperes", "AC current in amperes"),
    _f("p_mpptsum_kw", "pvs_inverter_dc_power_watts", "DC (panel) power in watts", KILO),
    _f("v_mppt1_v", "pvs_inverter_dc_voltage_volts", "DC (panel) voltage in volts"),
    _f("i_mppt1_a", "pvs_inverter_dc_current_amperes", "DC (panel) current in amperes"),
    _f("ltea_3phsum_kwh", "pvs_inverter_energy_joules", "Lifetime AC energy in joules", KWH,
       counter=True),
    _f("t_htsnk_degc", "pvs_inverter_heatsink_temperature_celsius", "Heatsink temperature in "
       "degrees Celsius"),
    _f("freq_hz", "pvs_inverter_frequency_hertz", "AC frequency in hertz"),
)  # fmt: skip
METER = (
    _f("p_3phsum_kw", "pvs_meter_real_power_watts", "Real power in watts; on a "
       "consumption meter > 0 is drawn from the grid", KILO),
    _f("q_3phsum_kvar", "pvs_meter_reactive_power_volt_amperes_reactive", "Reactive power in "
       "volt-amperes reactive", KILO),
    _f("s_3phsum_kva", "pvs_meter_apparent_power_volt_amperes", "Apparent power in "
       "volt-amperes", KILO),
    _f("tot_pf_rto", "pvs_meter_power_factor_ratio", "Power factor, real over apparent power"),
    _f("freq_hz", "pvs_meter_frequency_hertz", "AC frequency in hertz"),
    _f("net_ltea_3phsum_kwh", "pvs_meter_net_energy_joules", "Net lifetime energy in joules, "
       "imported less exported", KWH),
    _f("pos_ltea_3phsum_kwh", "pvs_meter_imported_energy_joules", "Lifetime energy in joules "
       "counted positive; on a consumption meter, from the grid", KWH, counter=True),
    _f("neg_ltea_3phsum_kwh", "pvs_meter_exported_energy_joules", "Lifetime energy in joules "
       "counted negative; on a consumption meter, to the grid", KWH, counter=True),
    _f("p1_kw", "pvs_meter_leg_power_watts", "Real power per leg in watts", KILO, leg="1"),
    _f("p2_kw", "pvs_meter_leg_power_watts", "Real power per leg in watts", KILO, leg="2"),
    _f("i1_a", "pvs_meter_leg_current_amperes", "Current per leg in amperes", leg="1"),
    _f("i2_a", "pvs_meter_leg_current_amperes", "Current per leg in amperes", leg="2"),
    _f("v1n_v", "pvs_meter_leg_voltage_volts", "Leg-to-neutral voltage in volts", leg="1"),
    _f("v2n_v", "pvs_meter_leg_voltage_volts", "Leg-to-neutral voltage in volts", leg="2"),
    _f("v12_v", "pvs_meter_leg_to_leg_voltage_volts", "Leg-to-leg voltage in volts"),
    _f("ct_scl_fctr", "pvs_meter_ct_rating_amperes", "Current transformer rating in amperes"),
)  # fmt: skip
SUPERVISOR = (
    _f("dl_uptime", "pvs_supervisor_uptime_seconds", "Time since the PVS booted in seconds"),
    _f("dl_cpu_load", "pvs_supervisor_cpu_load", "CPU load as the PVS reports it"),
    _f("cpu_usage", "pvs_supervisor_cpu_usage_ratio", "CPU usage as a fraction", PERCENT),
    _f("dl_mem_used", "pvs_supervisor_memory_used_bytes", "Memory used in bytes", KIBI),
    _f("ram_usage", "pvs_supervisor_memory_usage_ratio", "Memory used as a fraction", PERCENT),
    _f("dl_flash_avail", "pvs_supervisor_flash_free_bytes", "Free flash storage in bytes",
       KIBI),
    _f("flash_usage", "pvs_supervisor_flash_usage_ratio", "Flash used as a fraction", PERCENT),
    _f("dl_comm_err", "pvs_supervisor_communication_errors", "Communication errors since boot",
       counter=True),
    _f("dl_err_count", "pvs_supervisor_errors", "Errors since boot", counter=True),
    _f("dl_skipped_scans", "pvs_supervisor_skipped_scans", "Skipped device scans since boot",
       counter=True),
    _f("dl_scan_time", "pvs_supervisor_scan_time_seconds", "Device scan time in seconds"),
    _f("dl_untransmitted", "pvs_supervisor_untransmitted_records", "Records waiting to be "
       "sent to SunPower"),
)  # fmt: skip
ESS = (
    _f("p_3phsum_kw", "pvs_ess_power_watts", "Battery power in watts, signed as the PVS signs it",
       KILO),
    _f("customer_soc_val", "pvs_ess_customer_state_of_charge_ratio", "State of charge the "
       "owner's app shows, as a fraction"),
    _f("soc_val", "pvs_ess_state_of_charge_ratio", "State of charge as a fraction"),
    _f("soh_val", "pvs_ess_state_of_health_ratio", "State of health as a fraction"),
    _f("pos_ltea_3phsum_kwh", "pvs_ess_discharged_energy_joules", "Lifetime energy out of the "
       "battery in joules", KWH, counter=True),
    _f("neg_ltea_3phsum_kwh", "pvs_ess_charged_energy_joules", "Lifetime energy into the "
       "battery in joules", KWH, counter=True),
    _f("v_batt_v", "pvs_ess_battery_voltage_volts", "Battery voltage in volts"),
    _f("t_invtr_degc", "pvs_ess_inverter_temperature_celsius", "Inverter temperature in "
       "degrees Celsius"),
    _f("chrg_limit_pmax_kw", "pvs_ess_charge_limit_watts", "Charge power limit in watts", KILO),
    _f("dischrg_lim_pmax_kw", "pvs_ess_discharge_limit_watts", "Discharge power limit in watts",
       KILO),
)  # fmt: skip
TOTALS = (
    _f("pv_p", "pvs_site_pv_power_watts", "Solar production in watts", KILO),
    _f("pv_en", "pvs_site_pv_energy_joules", "Lifetime solar production in joules", KWH),
    _f("net_p", "pvs_site_grid_power_watts", "Grid power in watts, > 0 importing",
       KILO),
    _f("net_en", "pvs_site_grid_energy_joules", "Net lifetime grid energy in joules", KWH),
    _f("site_load_p", "pvs_site_load_power_watts", "The house's consumption in watts", KILO),
    _f("site_load_en", "pvs_site_load_energy_joules", "Lifetime consumption in joules", KWH),
    _f("ess_p", "pvs_site_battery_power_watts", "Battery power in watts, signed as the PVS "
       "signs it", KILO),
    _f("ess_en", "pvs_site_battery_energy_joules", "Battery energy out less in, in joules", KWH),
    _f("soc", "pvs_site_battery_state_of_charge_ratio", "Battery state of charge as a fraction",
       PERCENT),
)  # fmt: skip

# Per kind: the label names and the figures (the PVS itself is `serial` alone).
GROUPS: dict[Kind, tuple[tuple[str, ...], tuple[Figure, ...]]] = {
    Kind.SUPERVISOR: (("serial",), SUPERVISOR),
    Kind.INVERTER: (("serial", "model"), INVERTER),
    Kind.METER: (("serial", "kind"), METER),
    Kind.ESS: (("serial", "model"), ESS),
}
