"""Which `Host` names the session API and writes answer: DNS rebinding kept out.

A web page on any site can make a browser send requests to a name its owner controls,
then point that name at the bridge (DNS rebinding): the browser still believes it talks
to the page's own site, so the same-origin rule and CORS stop nothing. What gives it away
is the `Host` header, which carries the attacker's name. So the 2025 API (`/auth`,
`/vars`) and every write answer only a `Host` that is an IP address literal (v4, or v6 in
brackets, with an optional port) or one of the allowed names (`server.hostnames`; by
default this machine's name, that name + ".local", "localhost" and "sunpowerconsole.com",
the name the PVS's own DNS gives itself), compared without case, port or trailing dot.
Anything else gets a JSON 421 before any other work. The read-only legacy API answers
any `Host`, as the PVS does.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable

from aiohttp import hdrs, web
from cachetools import LRUCache

from bridge.web.errors import json_error

HostCheck = Callable[[web.Request], web.Response | None]
PVS_DNS_NAME = "sunpowerconsole.com"


def default_names() -> tuple[str, ...]:
    """The names allowed when `server.hostnames` is empty."""
    name = socket.gethostname()
    return (name, f"{name}.local", "localhost", PVS_DNS_NAME)


def _name(value: str) -> str:
    """A host name as compared: lower case, without the trailing dot."""
    lowered = value.strip().lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


def is_address(host: str) -> bool:
    """Whether a Host value (port included) is an IPv4 literal or a bracketed IPv6 one."""
    if host.startswith("["):
        literal, _, rest = host[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
        return _parses(literal, ipaddress.IPv6Address)
    literal, _, port = host.partition(":")
    if port and not port.isdigit():
        return False
    return _parses(literal, ipaddress.IPv4Address)


def _parses(literal: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(literal)
    except ValueError:
        return False
    return True


class AllowedHosts:
    """The Host names a route group answers; `check` refuses any other (see module doc)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(_name(name) for name in names if _name(name))
        # Clients repeat the same Host for ever: verdicts are memoised (bounded).
        self._verdicts: LRUCache[str, bool] = LRUCache(maxsize=256)

    @classmethod
    def from_config(cls, hostnames: Iterable[str]) -> AllowedHosts:
        """`server.hostnames`, or the default names when it is empty."""
        names = tuple(hostnames)
        return cls(names or default_names())

    def allows(self, host: str | None) -> bool:
        """Whether a request with this Host header (None: none sent) may go on."""
        if host is None:
            return True  # HTTP/1.0 without Host: no browser, so no rebinding
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = is_address(host) or _name(_without_port(host)) in self.names
            self._verdicts[host] = verdict
        return verdict

    def check(self, request: web.Request) -> web.Response | None:
        """None when the request's Host is allowed, else the JSON 421 to answer."""
        host = request.headers.get(hdrs.HOST)
        return None if self.allows(host) else self.refusal(host or "")

    def for_writes(self, is_write: Callable[[web.Request], bool]) -> HostCheck:
        """`check`, for the requests `is_write` says are writes; reads pass unchecked."""

        def check(request: web.Request) -> web.Response | None:
            host = request.headers.get(hdrs.HOST)
            if self.allows(host) or not is_write(request):
                return None
            return self.refusal(host or "")

        return check

    def refusal(self, host: str) -> web.Response:
        """The 421 for a Host this bridge does not answer the API or writes on."""
        return json_error(
            421,
            "misdirected_request",
            f"Host {host!r} is not a name this bridge answers the 2025 API or writes on: "
            "use its IP address, or add the name to server.hostnames",
        )


def _without_port(host: str) -> str:
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host
