"""The device read's interval by day and by night (`cache.refresh`, `cache.refresh_night`).

At night (see `site.night`) a DeviceList every minute shows nothing new but the house's
load, and costs the PVS a flash write each time: the read is spaced out to
`refresh_night`. The interval is chosen when an answer is stored, from the read it came
with, so it is also the answer's freshness: clients get it as a HIT for that long, and
refresh-ahead starts the next read one interval later. So clients never cause more reads
than the interval allows, by night as by day; the first read showing power (dawn)
brings the daytime interval back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bridge.pvs.requests import CacheClass, ProxyRequest
from bridge.site import Snapshot
from bridge.site.night import is_night

log = logging.getLogger(__name__)

TtlFor = Callable[[ProxyRequest], float]


class DayAndNight:
    """A `ttl_for` that spaces out the REFRESH class (the device read) at night."""

    def __init__(
        self, ttl_for: TtlFor, snapshot: Callable[[], Snapshot | None], night_interval: float
    ) -> None:
        self._ttl_for = ttl_for
        self._snapshot = snapshot
        self.night_interval = night_interval
        self.night = False

    def __call__(self, request: ProxyRequest) -> float:
        """The interval for `request`'s answer, stored now."""
        day_interval = self._ttl_for(request)
        if request.route.cache is not CacheClass.REFRESH:
            return day_interval
        night = is_night(self._snapshot())
        if night != self.night:
            self.night = night
            log.info(
                "%s: the device list is read every %g s",
                "night (every inverter asleep)" if night else "the inverters make power again",
                max(day_interval, self.night_interval) if night else day_interval,
            )
        return max(day_interval, self.night_interval) if night else day_interval
