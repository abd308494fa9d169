"""PVS reboots, seen in the device reads: the supervisor's uptime went down.

A reboot turns the 2025 firmware's live feed off, clears its sessions and often comes
with odd answers; the bridge notices it from data it reads anyway (no extra request),
counts it, logs it once, and tells whoever cares (the live feed switches itself on again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bridge.clock import Clock
from bridge.pvs.devices import DeviceRead
from bridge.site.timefmt import format_iso

log = logging.getLogger(__name__)


class RebootWatch:
    """Compares each read's uptime with the last one's."""

    def __init__(self, clock: Clock, listeners: Sequence[Callable[[float], None]] = ()) -> None:
        self._clock = clock
        self._listeners = tuple(listeners)
        self._last_uptime: float | None = None
        self.reboots = 0
        self.last_reboot_wall: float | None = None

    def read(self, found: DeviceRead) -> None:
        """One good device read (a DeviceReader listener)."""
        snapshot = found.snapshot
        supervisor = snapshot.supervisor if snapshot is not None else None
        uptime = supervisor.reading("dl_uptime") if supervisor is not None else None
        if uptime is None:
            return
        previous, self._last_uptime = self._last_uptime, uptime
        if previous is None or uptime >= previous:
            return
        self.reboots += 1
        self.last_reboot_wall = self._clock.wall() - uptime
        log.warning("the PVS rebooted (uptime %.0f s, was %.0f s)", uptime, previous)
        for listener in self._listeners:
            listener(uptime)

    def describe(self) -> dict[str, object]:
        """For /health: how many reboots were seen, and when the last one was (ISO 8601 UTC,
        as /health writes every time; the raw wall time too, as before)."""
        last = self.last_reboot_wall
        return {
            "reboots_seen": self.reboots,
            "last_reboot": None if last is None else format_iso(last),
            "last_reboot_wall": last,
        }
