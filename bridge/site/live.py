"""Live data: the PVS's WebSocket `power` frames, merged into one state, and built anew.

The PVS sends only the fields that changed (`time` always, in seconds on some builds and
milliseconds on others). The merged state keeps every field across partial frames, with
`time` in seconds, so a client that connects late gets one frame with everything known.
Where the PVS has no feed, the same frames are derived from each refreshed snapshot.
Pure: no sockets, no clock; callers pass times in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bridge.site.model import LIVE_TOTALS, LiveTotals

NOTIFICATION = "power"
# Every field a PVS6's `power` frame carries besides `time` (the totals, then the battery's
# backup time and the transfer switch's state).
FEED_FIELDS = (*LIVE_TOTALS, "backupTimeRemaining", "midstate")
# A `time` above this is in milliseconds (1e11 s is the year 5138).
MILLISECONDS_FROM = 1e11


@dataclass(frozen=True)
class LiveState:
    """Every field last seen, with the measurement time in seconds (None before any frame)."""

    fields: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    time: float | None = None

    def frame(self) -> str:
        """One `power` frame with every field known (what a newly connected client gets)."""
        params: dict[str, object] = {}
        if self.time is not None:
            params["time"] = self.time
        params.update(self.fields)
        return power_frame(params)


def power_frame(params: Mapping[str, object]) -> str:
    """A frame in the PVS's own shape."""
    return json.dumps({"notification": NOTIFICATION, "params": dict(params)}, separators=(",", ":"))


def parse_frame(text: str | bytes) -> dict[str, object] | None:
    """The params of a `power` frame (None for anything else: other notifications, junk)."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("notification") != NOTIFICATION:
        return None
    params = document.get("params")
    return dict(params) if isinstance(params, dict) else None


def seconds(value: object) -> float | None:
    """A frame's `time` in seconds, whichever unit the PVS used."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) / 1000.0 if value >= MILLISECONDS_FROM else float(value)


def merge(state: LiveState, params: Mapping[str, object]) -> LiveState:
    """The state after one frame: its fields replace the old ones, the rest are kept."""
    fields = dict(state.fields)
    fields.update((name, value) for name, value in params.items() if name != "time")
    moment = seconds(params.get("time"))
    return LiveState(MappingProxyType(fields), moment if moment is not None else state.time)


def from_totals(totals: LiveTotals, time: float) -> dict[str, object]:
    """A frame's params derived from a snapshot's totals (fields the site has, only)."""
    params: dict[str, object] = {"time": time}
    for name in LIVE_TOTALS:
        value = getattr(totals, name)
        if value is not None:
            params[name] = value
    return params


def changed(state: LiveState, params: Mapping[str, object]) -> dict[str, object]:
    """`params` reduced to what differs from `state` (and `time`), as the PVS sends them."""
    kept = {name: value for name, value in params.items() if state.fields.get(name) != value}
    kept.pop("time", None)
    return {"time": params["time"], **kept} if "time" in params else kept
