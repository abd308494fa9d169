"""Which client requests may reach the PVS, and the one canonical form each is sent in.

A request is either query-style (`/cgi-bin/dl_cgi?Command=NAME&...`) or path-style
(`/cgi-bin/dl_cgi/<path>`). Reads on the allowlist are normalised: only the parameters
the command takes, validated, in a fixed order. That canonical target is both the cache
key and exactly what goes upstream, so no client input can smuggle anything else to
the PVS. Everything else is refused here, before the cache or the gate see it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote

from bridge.config import WritesConfig
from bridge.pvs.requests import (
    DL_CGI,
    PATH_ALIASES,
    READ_COMMANDS,
    READ_PATHS,
    CacheClass,
    ProxyRequest,
    Route,
)
from bridge.web.auth import bearer_matches

MAX_QUERY_BYTES = 1024
MEMO_SIZE = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PolicyError(Exception):
    """A request the bridge refuses; carries the HTTP status and the JSON fields to send."""

    def __init__(self, status: int, error: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra


class Policy:
    """The allowlist, from config: classify() turns a client request into a ProxyRequest."""

    def __init__(self, writes: WritesConfig) -> None:
        self.writes_enabled = writes.enabled
        self.write_token = writes.token
        self.write_commands = frozenset(writes.commands) if writes.enabled else frozenset()
        # Parsing is the hot path's main cost; most clients repeat one query forever. A
        # plain dict, emptied when full (bounded: a client varying its queries only
        # costs itself the parse): a lookup here is on every cache hit, and an LRU's
        # bookkeeping cost more than the rest of the policy.
        self._memo: dict[tuple[str, str], ProxyRequest] = {}

    @property
    def allowed(self) -> dict[str, list[str]]:
        """What a refused client is told it may ask for."""
        return {
            "commands": sorted(READ_COMMANDS),
            "paths": [f"{DL_CGI}/{path}" for path in sorted({*READ_PATHS, *PATH_ALIASES})],
            "write_commands": sorted(self.write_commands),
        }

    def classify(self, path_tail: str, raw_query: str) -> ProxyRequest:
        """Map `/cgi-bin/dl_cgi[/path_tail]?raw_query` to its canonical request or refuse it."""
        memo_key = (path_tail, raw_query)
        known = self._memo.get(memo_key)
        if known is not None:
            return known
        request = self._classify(path_tail, raw_query)
        if not request.route.write:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[memo_key] = request
        return request

    def _classify(self, path_tail: str, raw_query: str) -> ProxyRequest:
        if len(raw_query) > MAX_QUERY_BYTES:
            raise PolicyError(414, "query_too_long", f"query longer than {MAX_QUERY_BYTES} bytes")
        pairs = _parse_query(raw_query)
        if path_tail:
            alias = PATH_ALIASES.get(path_tail)
            if alias is not None:
                return alias
            route = READ_PATHS.get(path_tail)
            if route is None:
                raise PolicyError(
                    404,
                    "unknown_path",
                    f"{DL_CGI}/{path_tail} is not an endpoint the bridge serves",
                    allowed=self.allowed,
                )
            # Path-style endpoints take no parameters; drop whatever a client appends.
            return ProxyRequest(route, f"{DL_CGI}/{path_tail}")
        command = _single(pairs, "Command")
        if command is None:
            raise PolicyError(
                400, "missing_command", "a Command parameter is required", allowed=self.allowed
            )
        route = READ_COMMANDS.get(command)
        if route is not None:
            params = _canonical_params(route, pairs)
            return ProxyRequest(route, _target(command, params), params)
        if command in self.write_commands:
            params = tuple((name, value) for name, value in pairs if name != "Command")
            write = Route(command, CacheClass.NEVER, write=True)
            return ProxyRequest(write, _target(command, params), params)
        raise PolicyError(
            403,
            "command_not_allowed",
            f"Command {command!r} is not allowed through this bridge"
            + ("" if self.writes_enabled else " (read-only: writes are disabled)"),
            command=command,
            allowed=self.allowed,
        )

    def check_write_token(self, authorization: str | None) -> None:
        """Writes need `Authorization: Bearer <writes.token>`."""
        if not bearer_matches(authorization, self.write_token):
            raise PolicyError(
                401, "unauthorized", "write commands need Authorization: Bearer <token>"
            )


def _parse_query(raw_query: str) -> list[tuple[str, str]]:
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict", max_num_fields=32)
    except UnicodeDecodeError:
        raise PolicyError(400, "bad_encoding", "query is not valid UTF-8") from None
    except ValueError:
        raise PolicyError(400, "too_many_parameters", "more than 32 query parameters") from None
    for name, value in pairs:
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise PolicyError(400, "control_characters", "query contains control characters")
    return pairs


def _single(pairs: list[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in pairs if key == name]
    if len(values) > 1:
        raise PolicyError(400, "repeated_parameter", f"{name} is given more than once")
    return values[0] if values else None


def _canonical_params(route: Route, pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The command's own parameters, validated, in the route's order; others are dropped."""
    canonical: list[tuple[str, str]] = []
    for param in route.params:
        value = _single(pairs, param.name)
        if value is None:
            if param.required:
                raise PolicyError(
                    400,
                    "missing_parameter",
                    f"{route.name} needs {param.name} ({param.description})",
                    command=route.name,
                )
            continue
        if not param.pattern.fullmatch(value):
            raise PolicyError(
                400,
                "bad_parameter",
                f"{param.name} must be {param.description}",
                command=route.name,
                parameter=param.name,
            )
        canonical.append((param.name, value))
    return tuple(canonical)


def _target(command: str, params: tuple[tuple[str, str], ...]) -> str:
    query = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in params)
    return f"{DL_CGI}?Command={quote(command, safe='')}" + (f"&{query}" if query else "")
