"""`GET /site.json`'s document: the site now, today so far, each panel, and the bridge's
health in plain words, for the home page (`home`) and anyone else who wants them.

Built from what the bridge holds (the latest snapshot, the live state, the minute history,
/health's verdict), never from a PVS request. Days are the bridge's local days; times are
wall seconds since 1970, with the bridge's UTC offset for showing them.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.cache.history import History
from bridge.site.live import LiveState
from bridge.site.model import Device, Snapshot

STALE_AFTER = 1200.0  # seconds: a panel not heard from for this long is stale
PRODUCING = 0.02  # kW: the median panel power from which a panel can be an outlier
LOW, HIGH = 0.5, 1.5  # an outlier: below half the median panel power, or above 1.5 times
SUMMARY = {
    "ok": "All good: the PVS answers and the data is fresh.",
    "degraded": "Degraded: the bridge still serves, but",
    "down": "Down: the bridge has nothing young enough to serve.",
}
SOURCES = {
    "feed": "live from the PVS's own feed",
    "derived": "from each device read (no live feed from the PVS)",
    "none": "no live data yet",
}


@dataclass(frozen=True)
class Inputs:
    """What the document is built from, at one moment."""

    now: float  # wall seconds
    snapshot: Snapshot | None
    live: LiveState
    live_source: str
    history: History
    health: Mapping[str, object]  # /health's document


def local_day(now: float) -> tuple[float, float, float]:
    """(start, end, UTC offset in seconds) of the bridge's local day around `now`."""
    today = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    offset = datetime.fromtimestamp(now).astimezone().utcoffset()
    seconds = 0.0 if offset is None else offset.total_seconds()
    return today.timestamp(), (today + timedelta(days=1)).timestamp(), seconds


def site_document(inputs: Inputs) -> dict[str, object]:
    """The whole document."""
    start, end, offset = local_day(inputs.now)
    snapshot = inputs.snapshot
    return {
        "now": round(inputs.now, 3),
        "utc_offset_s": offset,
        "waiting": snapshot is None,
        "snapshot_age_s": None if snapshot is None else round(inputs.now - snapshot.taken_at, 1),
        "power": power_now(inputs.live, snapshot),
        "today": today(inputs.history, start, end, inputs.now),
        "curve": [
            [(minute * 60 - int(start)) // 60, values[0], values[1]]
            for minute, values in inputs.history.samples(start, end)
        ],
        "inverters": [] if snapshot is None else panels(snapshot.inverters, inputs.now),
        "health": health_words(inputs.health, inputs.live_source),
    }


def power_now(live: LiveState, snapshot: Snapshot | None) -> dict[str, object]:
    """Production, consumption and net (> 0 imports) in kW: the newer of the live state
    and the snapshot's totals."""
    fields: Mapping[str, object] = {}
    when: float | None = None
    if snapshot is not None:
        totals = snapshot.totals
        fields = {"pv_p": totals.pv_p, "site_load_p": totals.site_load_p, "net_p": totals.net_p}
        when = snapshot.taken_at
    if live.time is not None and "pv_p" in live.fields and (when is None or live.time >= when):
        fields, when = live.fields, live.time
    return {
        "time": when,
        "pv_kw": _kw(fields.get("pv_p")),
        "load_kw": _kw(fields.get("site_load_p")),
        "net_kw": _kw(fields.get("net_p")),
    }


def _kw(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def today(history: History, start: float, end: float, now: float) -> dict[str, object]:
    """Energy since the day's first counter reading (`since`), from the lifetime counters."""
    since, deltas = history.energy(start, end)
    return {
        "start": start,
        "minutes": round((end - start) / 60),
        "now_minute": int((now - start) // 60),
        "since": since,
        "pv_kwh": deltas["pv_en"],
        "load_kwh": deltas["site_load_en"],
        "net_kwh": deltas["net_en"],
    }


def panels(inverters: Sequence[Device], now: float) -> list[dict[str, object]]:
    """Each inverter: power, state, data age, and `flag`: "stale" (not heard from lately),
    "fault" (a state other than working while the others produce), "low" or "high" (far
    from the median panel), "idle" (nothing produced, as at night), else "ok"."""
    rows: list[dict[str, object]] = []
    for device in inverters:
        age = None if device.measured_at is None else round(now - device.measured_at, 1)
        rows.append(
            {
                "serial": device.serial,
                "model": device.model,
                "kw": device.reading("p_3phsum_kw"),
                "kwh": device.reading("ltea_3phsum_kwh"),
                "state": device.state,
                "age_s": age,
                "stale": age is None or age > STALE_AFTER,
            }
        )
    fresh = [row["kw"] for row in rows if not row["stale"] and isinstance(row["kw"], float)]
    median = statistics.median(fresh) if fresh else 0.0
    for row in rows:
        row["flag"] = _flag(row, median)
    return rows


def _flag(row: Mapping[str, object], median: float) -> str:
    power = row["kw"]
    producing = median >= PRODUCING
    if row["stale"]:
        return "stale"
    if str(row["state"]).lower() != "working" and producing:
        return "fault"
    if producing and isinstance(power, float) and power < LOW * median:
        return "low"
    if producing and isinstance(power, float) and power > HIGH * median:
        return "high"
    return "ok" if isinstance(power, float) and power > 0 else "idle"


def health_words(health: Mapping[str, object], live_source: str) -> dict[str, object]:
    """/health's status and reasons, in plain words."""
    status = str(health.get("status", "degraded"))
    reasons = health.get("reasons")
    upstream = health.get("upstream")
    answered = upstream.get("last_success_age_s") if isinstance(upstream, dict) else None
    return {
        "status": status,
        "summary": SUMMARY.get(status, status),
        "reasons": [str(reason) for reason in reasons] if isinstance(reasons, list) else [],
        "last_answer_age_s": answered,
        "live": SOURCES.get(live_source, live_source),
        "version": health.get("version"),
    }
