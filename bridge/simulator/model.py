"""The simulated PV system: a supervisor, N inverters, a production and a consumption meter.

Values are pure functions of the wall clock, so they advance like a real site's:
power follows the sun over the site's day, energy counters are closed-form integrals of
that power (so they only ever grow), inverters report every 5 minutes and meters every
15 seconds, and `CURTIME` is the moment of the answer.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.clock import Clock

INVERTER_PERIOD = 300.0
METER_PERIOD = 15.0
SUPERVISOR_PERIOD = 600.0
DAY = 86400.0
INSTALLED = 1_546_300_800.0  # 2019-01-01: counters start at zero here


def pvs_time(wall: float) -> str:
    """The PVS's `YYYY,MM,DD,HH,MM,SS` timestamp format (UTC)."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y,%m,%d,%H,%M,%S")


def iso_time(wall: float) -> str:
    """The new firmware's ISO format, e.g. `2025-06-28T03:35:00Z`."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _noise(*parts: object) -> float:
    """A repeatable pseudo-random number in [-1, 1) from its inputs."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**31 - 1.0


def sun_fraction(wall: float, utc_offset_hours: float) -> float:
    """0 at night, rising to 1 at solar noon: sin over 06:00-18:00 local time."""
    hour = ((wall / 3600.0) + utc_offset_hours) % 24.0
    if not 6.0 <= hour <= 18.0:
        return 0.0
    return math.sin(math.pi * (hour - 6.0) / 12.0)


def sun_hours(wall: float, utc_offset_hours: float) -> float:
    """Integral of sun_fraction from INSTALLED to `wall`, in hours (grows monotonically)."""
    local = wall + utc_offset_hours * 3600.0
    start_local = INSTALLED + utc_offset_hours * 3600.0
    days_now, days_start = divmod(local, DAY), divmod(start_local, DAY)

    def within_day(seconds: float) -> float:
        hour = min(max(seconds / 3600.0, 6.0), 18.0)
        return (12.0 / math.pi) * (1.0 - math.cos(math.pi * (hour - 6.0) / 12.0))

    full_day = 24.0 / math.pi
    return (
        (days_now[0] - days_start[0]) * full_day
        + within_day(days_now[1])
        - within_day(days_start[1])
    )


@dataclass
class Inverter:
    """One microinverter with its rated power."""

    serial: str
    module_serial: str
    rated_kw: float
    energy_offset_kwh: float


@dataclass
class Site:
    """The whole simulated system, computed from the clock on demand."""

    clock: Clock
    inverter_count: int = 12
    serial: str = "ZT01234567890ABCDE"
    model: str = "PVS6"
    utc_offset_hours: float = -8.0
    base_load_kw: float = 0.9
    booted_wall: float = 0.0
    boots: int = 0  # reboots since the simulation started (power cycles, `down`, `fragile`)
    inverters: list[Inverter] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.booted_wall:
            self.booted_wall = self.clock.wall()
        self.inverters = [
            Inverter(
                serial=f"E00{122000000000 + index:012d}",
                module_serial=f"P07M{1234567 + index:08d}",
                rated_kw=0.32 + 0.01 * _noise("rating", index),
                energy_offset_kwh=round(50 + 10 * abs(_noise("offset", index)), 4),
            )
            for index in range(self.inverter_count)
        ]

    @property
    def production_meter_serial(self) -> str:
        """The production meter's serial: model, `M`, digits, `p`."""
        return f"{self.model}M01234567p"

    @property
    def consumption_meter_serial(self) -> str:
        """The consumption meter's serial: as production, ending in `c`."""
        return self.production_meter_serial[:-1] + "c"

    def grid_counters(self, wall: float) -> tuple[float, float]:
        """(imported, exported) kWh at the consumption meter; both only grow."""
        return 0.55 * self.consumed_kwh(wall), 0.6 * self.produced_kwh(wall)

    def uptime(self) -> float:
        """Seconds since the simulated PVS booted."""
        return max(0.0, self.clock.wall() - self.booted_wall)

    def reboot(self) -> None:
        """Start the uptime counter again, as after a power cycle."""
        self.booted_wall = self.clock.wall()
        self.boots += 1

    @staticmethod
    def measured_at(wall: float, period: float) -> float:
        """The last moment a device with this reporting period took a measurement."""
        return math.floor(wall / period) * period

    def inverter_reading(self, inverter: Inverter, wall: float) -> dict[str, float]:
        """An inverter's metrics at its last measurement before `wall`."""
        at = self.measured_at(wall, INVERTER_PERIOD)
        sun = sun_fraction(at, self.utc_offset_hours)
        jitter = 1.0 + 0.03 * _noise(inverter.serial, at)
        power = max(0.0, inverter.rated_kw * sun * jitter)
        energy = inverter.energy_offset_kwh + inverter.rated_kw * sun_hours(
            at, self.utc_offset_hours
        )
        voltage = 240.0 + 5.0 * _noise("v", inverter.serial, at)
        mppt_v = 52.0 + 3.0 * _noise("mppt", inverter.serial, at) if power else 0.0
        return {
            "measured_at": at,
            "p_kw": power,
            "energy_kwh": energy,
            "v_ac": voltage,
            "i_ac": power * 1000.0 / voltage,
            "freq": 60.0 + 0.02 * _noise("f", at),
            "t_heatsink": 12.0 + 25.0 * sun + 2.0 * _noise("t", inverter.serial, at),
            "p_dc": power * 1.025,
            "v_dc": mppt_v,
            "i_dc": (power * 1025.0 / mppt_v) if mppt_v else 0.0,
        }

    def production_kw(self, wall: float) -> float:
        """What the production meter reads: the array's output at meter resolution."""
        at = self.measured_at(wall, METER_PERIOD)
        sun = sun_fraction(at, self.utc_offset_hours)
        rated = sum(inverter.rated_kw for inverter in self.inverters)
        return max(0.0, rated * sun * (0.98 + 0.01 * _noise("prod", at)))

    def load_kw(self, wall: float) -> float:
        """The house's consumption: a base load with an evening bump."""
        at = self.measured_at(wall, METER_PERIOD)
        hour = ((at / 3600.0) + self.utc_offset_hours) % 24.0
        evening = 1.2 * math.exp(-((hour - 19.0) ** 2) / 4.0)
        return self.base_load_kw + evening + 0.1 * _noise("load", at)

    def produced_kwh(self, wall: float) -> float:
        """The production meter's lifetime counter."""
        at = self.measured_at(wall, METER_PERIOD)
        rated = sum(inverter.rated_kw for inverter in self.inverters)
        return 0.98 * rated * sun_hours(at, self.utc_offset_hours)

    def consumed_kwh(self, wall: float) -> float:
        """Lifetime house consumption (base load integral plus evening bumps, approximately)."""
        at = self.measured_at(wall, METER_PERIOD)
        hours = (at - INSTALLED) / 3600.0
        return self.base_load_kw * hours + 1.2 * math.sqrt(4.0 * math.pi) * hours / 24.0

    def livedata(self, wall: float) -> dict[str, float]:
        """The varserver's `/sys/livedata` numbers (kW, kWh), unrounded; no battery here."""
        production, load = self.production_kw(wall), self.load_kw(wall)
        imported, exported = self.grid_counters(wall)
        return {
            "pv_p": production,
            "pv_en": self.produced_kwh(wall),
            "net_p": load - production,
            "net_en": imported - exported,
            "site_load_p": load,
            "site_load_en": self.consumed_kwh(wall),
            "ess_p": 0.0,
            "ess_en": 0.0,
            "soc": 0.0,
        }
