"""Is a 2xx answer fit to replace the last good one?

The PVS sometimes answers 200 with a body that is broken, or a DeviceList from which
the meters have vanished (they come back after a PVS reboot). Serving that as fresh
would be worse than serving the previous answer as stale, so such an answer is rejected
here and counted. A device reporting an error state is data, not a fault.
"""

from __future__ import annotations

import json
from collections import Counter


def suspicious_change(name: str, body: bytes, previous: bytes | None) -> str | None:
    """Why `body` must not replace `previous` (None when it may).

    The upstream has already refused bodies that are not JSON, so only the DeviceList's
    shape is checked here, and only against a previous good answer.
    """
    if name not in ("DeviceList", "devices/list") or previous is None:
        return None
    try:
        document, before = json.loads(body), json.loads(previous)
    except ValueError:
        return "is not valid JSON"
    now_types, before_types = _device_types(document), _device_types(before)
    if now_types is None:
        return "has no device list"
    lost = {
        kind
        for kind in ("Power Meter", "PVS")
        if before_types and before_types[kind] > now_types[kind]
    }
    if lost:
        return "lacks the " + " and ".join(sorted(lost)) + " device(s) the last good answer had"
    return None


def _device_types(document: object) -> Counter[str] | None:
    if not isinstance(document, dict):
        return None
    devices = document.get("devices")
    if not isinstance(devices, list):
        return None
    return Counter(
        str(device.get("DEVICE_TYPE", "")) for device in devices if isinstance(device, dict)
    )
