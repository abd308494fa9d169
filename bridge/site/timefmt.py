"""The PVS's two ways of writing a moment, to and from wall-clock seconds (UTC epoch).

Legacy `CURTIME`/`DATATIME`: `YYYY,MM,DD,HH,MM,SS` in UTC. 2025 varserver `msmtEps`:
ISO 8601 such as `2025-06-28T03:35:00Z`.
"""

from __future__ import annotations

from datetime import UTC, datetime

LEGACY_FORMAT = "%Y,%m,%d,%H,%M,%S"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_legacy(wall: float) -> str:
    """Wall seconds -> `2019,05,11,16,53,53` (UTC)."""
    return datetime.fromtimestamp(wall, UTC).strftime(LEGACY_FORMAT)


def parse_legacy(text: str) -> float | None:
    """`2019,05,11,16,53,53` (UTC) -> wall seconds, or None when it is not such a time."""
    parts = text.split(",")
    if len(parts) != 6 or not all(part.strip().isdigit() for part in parts):
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in parts)
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp()


def format_iso(wall: float) -> str:
    """Wall seconds -> `2025-06-28T03:35:00Z`."""
    return datetime.fromtimestamp(wall, UTC).strftime(ISO_FORMAT)


def parse_iso(text: str) -> float | None:
    """An ISO 8601 time (`Z`, an offset, or none meaning UTC) -> wall seconds, or None."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        # The translator printed a naive time as it stood, i.e. read it as UTC.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
