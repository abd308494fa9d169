"""Night, as the PVS's own data shows it: every inverter asleep or making no power.

Microinverters run on their panels' power: after sunset they stop, and the PVS reports
them in a state other than `working` (legacy firmware: `error`) or with zero output.
The device read then brings nothing new but the meters, so it can be made less often
(see `cache.refresh_interval`); the first read that shows power again is dawn.
A site without inverters (or whose inverters report nothing at all) is never "night":
without evidence, the bridge keeps its daytime pace.
"""

from __future__ import annotations

from bridge.site.model import Device, Snapshot

WORKING = "working"
NO_POWER_KW = 0.001  # below 1 W an inverter is idle: what it reports at night is noise


def inverter_asleep(inverter: Device) -> bool:
    """Not working, or working without making power."""
    if inverter.state.strip().lower() != WORKING:
        return True
    power = inverter.reading("p_3phsum_kw")
    return power is not None and power < NO_POWER_KW


def is_night(snapshot: Snapshot | None) -> bool:
    """Every inverter of the snapshot asleep (False without a snapshot or inverters)."""
    if snapshot is None or not snapshot.inverters:
        return False
    return all(inverter_asleep(inverter) for inverter in snapshot.inverters)
