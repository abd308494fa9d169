"""Which network interface faces the PVS, and where the PVS is (netifaces).

On the Pi the PVS-side interface gets a 172.27.x address from the PVS's DHCP server.
The bridge tells the interfaces apart by that, or by the configured name, and can find
the PVS from it: the interface's gateway when the routing table has one, else `.1` of
its subnet (the PVS always hands itself out as `.1`).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import netifaces

log = logging.getLogger(__name__)

PVS_NETWORK = ipaddress.ip_network("172.27.0.0/16")


@dataclass(frozen=True)
class InterfaceAddress:
    """One IPv4 address on one interface."""

    name: str
    address: str
    netmask: str

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The subnet this address is on."""
        return ipaddress.IPv4Network(f"{self.address}/{self.netmask}", strict=False)


def ipv4_addresses() -> list[InterfaceAddress]:
    """Every IPv4 address on every interface, loopback excluded."""
    found: list[InterfaceAddress] = []
    for name in netifaces.interfaces():
        for item in netifaces.ifaddresses(name).get(netifaces.AF_INET, []):
            address = item.get("addr")
            if not address or address.startswith("127."):
                continue
            found.append(InterfaceAddress(name, address, item.get("netmask") or "255.255.255.255"))
    return found


def pvs_side(hint: str = "", upstream_host: str | None = None) -> InterfaceAddress | None:
    """The interface that faces the PVS: by name, else on the upstream's subnet, else 172.27.x."""
    addresses = ipv4_addresses()
    if hint:
        named = [item for item in addresses if item.name == hint]
        return named[0] if named else None
    if upstream_host:
        try:
            host = ipaddress.ip_address(upstream_host)
        except ValueError:
            host = None
        for item in addresses:
            if host is not None and host in item.network:
                return item
    for item in addresses:
        if ipaddress.ip_address(item.address) in PVS_NETWORK:
            return item
    return None


def find_pvs(hint: str = "") -> tuple[str, str] | None:
    """(interface, PVS address) for `upstream = "auto"`, or None when no interface faces a PVS."""
    side = pvs_side(hint)
    if side is None:
        return None
    routes: Any = netifaces.gateways().get(netifaces.AF_INET, [])
    for gateway, interface, *_ in routes:
        if interface == side.name and ipaddress.ip_address(gateway) in side.network:
            return side.name, gateway
    return side.name, str(next(side.network.hosts()))


def describe(hint: str = "", upstream_host: str | None = None) -> dict[str, object]:
    """The interfaces as /health shows them: the PVS side and the LAN side."""
    side = pvs_side(hint, upstream_host)
    lan: dict[str, list[str]] = {}
    for name in netifaces.interfaces():
        if side is not None and name == side.name:
            continue
        addresses = netifaces.ifaddresses(name)
        for family in (netifaces.AF_INET, netifaces.AF_INET6):
            for item in addresses.get(family, []):
                address = str(item.get("addr", "")).split("%")[0]
                if address and not address.startswith("127.") and address != "::1":
                    lan.setdefault(name, []).append(address)
    return {
        "pvs_side": None
        if side is None
        else {"name": side.name, "address": side.address, "network": str(side.network)},
        "lan": [{"name": name, "addresses": found} for name, found in sorted(lan.items())],
    }


def resolve_upstream_url(url: str, hint: str = "") -> str:
    """The configured upstream, with `auto` resolved to the PVS-side interface's gateway."""
    if url != "auto":
        return url
    found = find_pvs(hint)
    if found is None:
        log.warning("upstream = auto: no interface on 172.27.0.0/16; using http://172.27.153.1")
        return "http://172.27.153.1"
    name, address = found
    log.info("upstream = auto: PVS at %s via %s", address, name)
    return f"http://{address}"
