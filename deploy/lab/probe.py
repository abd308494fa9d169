"""HTTP facts the lab checks from the home-LAN side (run inside the LAN namespace).

Usage:
  probe.py devicelist URL N   the bridge serves DeviceList with N inverters
  probe.py health URL IFACE   /health is "ok" and names IFACE as the PVS side
  probe.py closed HOST PORT   nothing answers a TCP connection there (within 3 s)
  probe.py feed URL           the live feed (ws://...) sends a power frame with pv_p
  probe.py api URL N          the 2025 API over HTTPS (self-signed): the pre-login serial,
                              Basic login, then /vars lists N inverters
Prints one short fact on success; exits 1 with the reason otherwise.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.request


def fetch(url: str) -> tuple[int, dict[str, object]]:
    """GET a JSON document (bounded by a timeout)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def devicelist(url: str, inverters: int) -> str:
    status, document = fetch(url)
    devices = document.get("devices", [])
    assert isinstance(devices, list)
    found = sum(1 for device in devices if device.get("DEVICE_TYPE") == "Inverter")
    if status != 200 or found != inverters:
        raise SystemExit(f"{url}: status {status}, {found} inverters (want {inverters})")
    return f"{found} inverters"


def health(url: str, interface: str) -> str:
    status, document = fetch(url)
    side = document.get("interfaces", {}).get("pvs_side") or {}  # type: ignore[union-attr]
    if status != 200 or document.get("status") != "ok" or side.get("name") != interface:
        raise SystemExit(f"{url}: status {status}: {json.dumps(document)[:400]}")
    upstream = document.get("upstream", {}).get("url")  # type: ignore[union-attr]
    return f"health ok pvs_side={side.get('name')}/{side.get('address')} upstream={upstream}"


def closed(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as exc:
        return f"{host}:{port} closed ({exc.__class__.__name__})"
    raise SystemExit(f"{host}:{port} accepted a connection")


def feed(url: str) -> str:
    """Connect as pypvs does and read the first frame (the bridge sends all known fields)."""
    import asyncio

    import aiohttp

    async def first_frame() -> str:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            message = await asyncio.wait_for(ws.receive(), 30)
            return str(message.data)

    text = asyncio.run(first_frame())
    document = json.loads(text)
    params = document.get("params", {})
    if document.get("notification") != "power" or "pv_p" not in params:
        raise SystemExit(f"{url}: not a power frame with pv_p: {text[:200]}")
    return f"live feed frame pv_p={params['pv_p']}"


def api(base: str, inverters: int) -> str:
    """The reference client's flow: read the serial before logging in, derive the password,
    log in, then ask for the inverters' variables (certificate checks off, as it does)."""
    import base64
    import http.cookiejar
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), urllib.request.HTTPCookieProcessor(jar)
    )

    def post(query: str) -> dict[str, object]:
        request = urllib.request.Request(f"{base}/vars", data=query.encode(), method="POST")
        request.add_header("Content-Type", "text/plain")
        with opener.open(request, timeout=30) as response:
            return dict(json.loads(response.read()))

    serial = post("name=/sys/info/serialnum&fmt=obj")["/sys/info/serialnum"]
    token = base64.b64encode(f"ssm_owner:{str(serial)[-5:].upper()}".encode()).decode()
    login = urllib.request.Request(
        f"{base}/auth?login", headers={"Authorization": f"basic {token}"}
    )
    with opener.open(login, timeout=30) as response:
        session = json.loads(response.read()).get("session", "")
    found = post("match=/sys/devices/inverter/&fmt=obj")
    serials = {value for name, value in found.items() if name.endswith("/sn")}
    if len(session) != 64 or len(serials) != inverters:
        raise SystemExit(f"{base}: session {len(session)} chars, {len(serials)} inverters")
    return f"HTTPS login + /vars: {len(serials)} inverters"


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "devicelist":
        print(devicelist(args[0], int(args[1])))
    elif command == "health":
        print(health(args[0], args[1]))
    elif command == "api":
        print(api(args[0], int(args[1])))
    elif command == "feed":
        print(feed(args[0]))
    elif command == "closed":
        print(closed(args[0], int(args[1])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
