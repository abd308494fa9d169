"""Site totals derived from the devices, and the assembly of a Snapshot from parsed devices.

Sign convention as in `/sys/livedata`: net_p > 0 imports from the grid. The consumption
meter reads the grid connection (net = load - production, as the simulator models it),
so the house's load is production plus net.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bridge.site.model import Device, Kind, LiveTotals, Snapshot


def _sum(devices: Iterable[Device], name: str) -> float | None:
    values = [value for device in devices if (value := device.reading(name)) is not None]
    # Rounded so that sums of 4-decimal readings do not print float noise.
    return round(sum(values), 6) if values else None


def _mean(devices: Iterable[Device], name: str) -> float | None:
    values = [value for device in devices if (value := device.reading(name)) is not None]
    return round(sum(values) / len(values), 6) if values else None


def _add(left: float | None, right: float | None) -> float | None:
    return None if left is None or right is None else round(left + right, 6)


def derive_totals(
    supervisor: Device | None,
    inverters: Sequence[Device],
    meters: Sequence[Device],
    storage: Sequence[Device],
) -> LiveTotals:
    """PV, grid, load and battery totals from the site's devices (None where unknown)."""
    del supervisor  # part of the signature for totals that may need it (system type)
    production = [meter for meter in meters if meter.is_production]
    consumption = [meter for meter in meters if meter.is_consumption]
    pv_p = _sum(production, "p_3phsum_kw")
    if pv_p is None:
        pv_p = _sum(inverters, "p_3phsum_kw")
    pv_en = _sum(production, "net_ltea_3phsum_kwh")
    if pv_en is None:
        pv_en = _sum(inverters, "ltea_3phsum_kwh")
    net_p = _sum(consumption, "p_3phsum_kw")
    net_en = _sum(consumption, "net_ltea_3phsum_kwh")
    return LiveTotals(
        pv_p=pv_p,
        pv_en=pv_en,
        net_p=net_p,
        net_en=net_en,
        site_load_p=_add(pv_p, net_p),
        site_load_en=_add(pv_en, net_en),
        ess_p=_sum(storage, "p_3phsum_kw"),
        ess_en=_battery_energy(storage),
        soc=_state_of_charge(storage),
    )


def _battery_energy(storage: Sequence[Device]) -> float | None:
    # Lifetime energy out of the batteries less energy into them (kWh).
    out, into = _sum(storage, "pos_ltea_3phsum_kwh"), _sum(storage, "neg_ltea_3phsum_kwh")
    return None if out is None or into is None else round(out - into, 6)


def _state_of_charge(storage: Sequence[Device]) -> float | None:
    # varserver gives SOC as a fraction; the live feed's `soc` is a percentage. The
    # customer SOC is the one the owner's app shows, so it wins over the system SOC.
    fraction = _mean(storage, "customer_soc_val")
    if fraction is None:
        fraction = _mean(storage, "soc_val")
    return None if fraction is None else round(fraction * 100, 4)


def assemble(taken_at: float, pvs_time: float | None, devices: Iterable[Device]) -> Snapshot:
    """A Snapshot from parsed devices, sorted by kind (order kept within a kind), with totals."""
    supervisor: Device | None = None
    groups: dict[Kind, list[Device]] = {kind: [] for kind in Kind}
    for device in devices:
        if device.kind is Kind.SUPERVISOR and supervisor is None:
            supervisor = device
        elif device.kind is Kind.SUPERVISOR:
            groups[Kind.OTHER].append(device)  # a second PVS: kept, not lost
        else:
            groups[device.kind].append(device)
    inverters, meters = tuple(groups[Kind.INVERTER]), tuple(groups[Kind.METER])
    storage = tuple(groups[Kind.ESS])
    return Snapshot(
        taken_at=taken_at,
        pvs_time=pvs_time,
        supervisor=supervisor,
        inverters=inverters,
        meters=meters,
        storage=storage,
        others=tuple(groups[Kind.OTHER]),
        totals=derive_totals(supervisor, inverters, meters, storage),
    )
