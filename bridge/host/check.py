"""`pvs-bridge check`: diagnose an installation, one line per fact, exit 1 on any failure."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bridge.config import Config, parse_hostport
from bridge.host import interfaces


def _default_route_interfaces(route_table: Path = Path("/proc/net/route")) -> list[tuple[str, str]]:
    """(interface, gateway) of every IPv4 default route."""
    found: list[tuple[str, str]] = []
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            gateway = bytes.fromhex(fields[2])[::-1]
            found.append((fields[0], ".".join(str(octet) for octet in gateway)))
    return found


def _ip_forward(path: Path = Path("/proc/sys/net/ipv4/ip_forward")) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return "?"


def _leaves_by_default_route(host: str | None, side: interfaces.InterfaceAddress | None) -> bool:
    """Whether a request to a PVS address would go out some other way than the PVS side.

    With no interface on the PVS's network (cable out, no DHCP lease yet) a request to
    172.27.x follows the default route to the home router and beyond: never send it.
    """
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False  # a host name: nothing to judge before resolving it
    on_pvs_network = address in interfaces.PVS_NETWORK
    return on_pvs_network and (side is None or address not in side.network)


async def run(cfg: Config, bridge: str | None = None) -> int:
    """Print what is right and wrong; 0 when everything checked out. `bridge` is the
    bridge's base URL (default: the first listen address of `cfg`, on this machine)."""
    problems = 0

    def report(ok: bool, text: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        print(f"{'ok  ' if ok else 'FAIL'} {text}")

    upstream = interfaces.resolve_upstream_url(cfg.upstream.url, cfg.upstream.interface)
    host = urlsplit(upstream).hostname
    side = interfaces.pvs_side(cfg.upstream.interface, host)
    report(
        side is not None,
        "PVS-side interface: "
        + (
            f"{side.name} {side.address} ({side.network})"
            if side
            else "none found on 172.27.0.0/16"
        ),
    )
    defaults = _default_route_interfaces()
    via_pvs = [item for item in defaults if side is not None and item[0] == side.name]
    report(
        not via_pvs,
        "default route not via the PVS: "
        + (", ".join(f"{name} via {gw}" for name, gw in defaults) or "no default route"),
    )
    forwarding = _ip_forward()
    report(forwarding == "0", f"IPv4 forwarding off (ip_forward={forwarding})")
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        bridge = (bridge or _local_bridge(cfg)).rstrip("/")
        bridge_up = await _probe_bridge(session, bridge, report)
        if bridge_up:
            # Through the running bridge, never beside it: the PVS must not see a second
            # request while the service has one in flight.
            await _probe_pvs(session, upstream, report, via=bridge)
        elif _leaves_by_default_route(host, side):
            report(
                False,
                f"PVS at {upstream} not probed: no interface is on its network, so the "
                "request would leave through the default route (is the PVS cable in?)",
            )
        else:
            await _probe_pvs(session, upstream, report)
    print("check: " + ("all good" if problems == 0 else f"{problems} problem(s)"))
    return 0 if problems == 0 else 1


def _local_bridge(cfg: Config) -> str:
    """The bridge on this machine, at its first HTTP listen address."""
    listen_host, port = parse_hostport(cfg.server.listen[0], "server.listen")
    local = "127.0.0.1" if listen_host in ("0.0.0.0", "::", "") else listen_host
    return f"http://{local}:{port}"


async def _probe_bridge(
    session: aiohttp.ClientSession, bridge: str, report: Callable[[bool, str], None]
) -> bool:
    """Whether the bridge answers /health (and says what it says)."""
    try:
        async with session.get(f"{bridge}/health") as response:
            health = json.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        report(False, f"bridge not answering at {bridge}: {error or type(error).__name__}")
        return False
    report(
        health.get("status") != "down",
        f"bridge at {bridge}: status {health.get('status')} "
        + "; ".join(health.get("reasons", [])),
    )
    return True


async def _probe_pvs(
    session: aiohttp.ClientSession,
    upstream: str,
    report: Callable[[bool, str], None],
    via: str | None = None,
) -> None:
    """Ask the PVS for supervisor/info (unauthenticated on every firmware), through the
    bridge at `via` when one runs."""
    how = f" (through the bridge at {via})" if via else ""
    try:
        async with session.get(f"{via or upstream}/cgi-bin/dl_cgi/supervisor/info") as response:
            body = await response.read()
        info = json.loads(body).get("supervisor", {}) if response.status == 200 else {}
        report(
            response.status == 200,
            f"PVS at {upstream} answers supervisor/info{how}: "
            f"HTTP {response.status} {info.get('MODEL', '')} {info.get('SWVER', '')}".rstrip(),
        )
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        report(False, f"PVS at {upstream} unreachable{how}: {error or type(error).__name__}")
