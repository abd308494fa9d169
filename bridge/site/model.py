"""The site model: an immutable snapshot of the whole PV system, whichever API it came from.

Plain frozen dataclasses. Parsing lives in `legacy` and `varserver`, totals in `totals`;
nothing here does I/O. A device that carries a `DEVICE_TYPE` attribute came from a legacy
DeviceList and is printed back as given; one without it (parsed from varserver variables,
or built by hand) is printed the way the 2025-firmware translator always printed it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType


class SiteDataError(ValueError):
    """The PVS's data cannot be read as a site (e.g. a DeviceList without `devices`)."""


class Kind(enum.Enum):
    """What a device is, as far as the site model cares."""

    SUPERVISOR = "supervisor"
    INVERTER = "inverter"
    METER = "meter"
    ESS = "ess"
    OTHER = "other"


@dataclass(frozen=True)
class Reading:
    """One figure of one device."""

    value: float
    text: str  # exactly as printed, so renderers reproduce the PVS's digits
    unit: str


@dataclass(frozen=True)
class Device:
    """One device of the site: the PVS itself, an inverter, a meter, a battery, ..."""

    kind: Kind
    serial: str
    model: str
    state: str
    measured_at: float | None
    readings: Mapping[str, Reading] = field(default_factory=lambda: MappingProxyType({}))
    attributes: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        # A caller may hand in a plain dict: copy it behind a read-only view so the
        # snapshot stays immutable even if the caller keeps mutating its dict.
        if not isinstance(self.readings, MappingProxyType):
            object.__setattr__(self, "readings", MappingProxyType(dict(self.readings)))

    def reading(self, name: str) -> float | None:
        """The value of one figure, or None when the device does not report it."""
        found = self.readings.get(name)
        return None if found is None else found.value

    def attribute(self, name: str) -> object | None:
        """The first attribute of that name, or None."""
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    @property
    def legacy_shaped(self) -> bool:
        """True when the device came from a legacy DeviceList (it carries DEVICE_TYPE)."""
        return any(key == "DEVICE_TYPE" for key, _ in self.attributes)

    @property
    def is_consumption(self) -> bool:
        """A consumption meter: TYPE ends in `-C`, or (no TYPE) the model ends in `c`."""
        if self.kind is not Kind.METER:
            return False
        meter_type = self.attribute("TYPE")
        if isinstance(meter_type, str) and meter_type:
            return meter_type.upper().endswith("-C")
        return self.model.lower().endswith("c")

    @property
    def is_production(self) -> bool:
        """A production meter: any meter that is not a consumption meter (as the translator)."""
        return self.kind is Kind.METER and not self.is_consumption


@dataclass(frozen=True)
class LiveTotals:
    """Site totals named as in the PVS WebSocket feed and `/sys/livedata` (kW, kWh, %)."""

    pv_p: float | None = None
    pv_en: float | None = None
    net_p: float | None = None
    net_en: float | None = None
    site_load_p: float | None = None
    site_load_en: float | None = None
    ess_p: float | None = None
    ess_en: float | None = None
    soc: float | None = None


# The totals' names, in the feed's order (the WebSocket frames and /sys/livedata use them).
LIVE_TOTALS = tuple(item.name for item in fields(LiveTotals))


@dataclass(frozen=True)
class Snapshot:
    """The whole site at one moment, parsed once per refresh."""

    taken_at: float
    pvs_time: float | None
    supervisor: Device | None
    inverters: tuple[Device, ...]
    meters: tuple[Device, ...]
    storage: tuple[Device, ...]
    others: tuple[Device, ...]
    totals: LiveTotals

    @property
    def devices(self) -> tuple[Device, ...]:
        """Every device in the PVS's DeviceList order: PVS, meters, inverters, storage, rest."""
        head = (self.supervisor,) if self.supervisor is not None else ()
        return head + self.meters + self.inverters + self.storage + self.others

    def find(self, serial: str) -> Device | None:
        """The first device with this serial number, or None."""
        for device in self.devices:
            if device.serial == serial:
                return device
        return None

    @property
    def serials(self) -> frozenset[str]:
        """Every device's serial number."""
        return frozenset(device.serial for device in self.devices)
