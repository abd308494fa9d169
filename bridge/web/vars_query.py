"""A `/vars` query as clients send it (2025 API), validated and in one canonical form.

`name=` or `match=`, then `fmt=`: that canonical target is the cache key and what goes
to the PVS, so identical queries from any number of clients share one answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from bridge.web.policy import PolicyError

MAX_QUERY_BYTES = 1024
MAX_CACHE_IDS = 16

# What the reference client reads before it logs in (it needs the serial for the password).
PRE_LOGIN_NAMES = frozenset({"/sys/info/serialnum", "/sys/info/ssid", "/sys/info/lmac"})
VAR_NAME = re.compile(r"/[A-Za-z0-9_./-]{1,200}")
MATCH = re.compile(r"[A-Za-z0-9_./-]{1,200}")
CACHE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
SET_VALUE = re.compile(r"(/[A-Za-z0-9_./-]{1,200})=([A-Za-z0-9_.:,/ +-]{0,200})")
KEYS = frozenset({"name", "match", "fmt", "cache", "set"})


@dataclass(frozen=True)
class VarsQuery:
    """A client's `/vars` query, validated; `target` is what goes to the PVS."""

    names: tuple[str, ...] = ()
    match: str | None = None
    fmt: str | None = None
    cache: str | None = None
    write: str | None = None

    @property
    def selects(self) -> bool:
        """Whether it says which variables (rather than naming a cache only)."""
        return bool(self.names) or self.match is not None

    @property
    def pre_login(self) -> bool:
        """Only the variables a client may read before logging in."""
        return bool(self.names) and set(self.names) <= PRE_LOGIN_NAMES and self.write is None

    def target(self) -> str:
        """The canonical upstream target: the cache key, without the client's cache id."""
        if self.names:
            selector = "name=" + ",".join(quote(name, safe="/.-_") for name in self.names)
        else:
            selector = "match=" + quote(self.match or "", safe="/.-_")
        return "/vars?" + selector + (f"&fmt={self.fmt}" if self.fmt else "")


def parse_vars(raw: str) -> VarsQuery:
    """Parse and check a `/vars` query string (or POST body); raises PolicyError."""
    if len(raw) > MAX_QUERY_BYTES:
        raise PolicyError(414, "query_too_long", f"/vars query longer than {MAX_QUERY_BYTES} bytes")
    try:
        pairs = parse_qsl(raw.strip(), keep_blank_values=True, errors="strict", max_num_fields=8)
    except UnicodeDecodeError:
        raise PolicyError(400, "bad_encoding", "query is not valid UTF-8") from None
    except ValueError:
        raise PolicyError(400, "too_many_parameters", "too many /vars parameters") from None
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key not in KEYS:
            raise PolicyError(400, "unknown_parameter", f"/vars takes {', '.join(sorted(KEYS))}")
        if key in seen:
            raise PolicyError(400, "repeated_parameter", f"{key} is given more than once")
        seen[key] = value
    names = tuple(dict.fromkeys(name for name in seen.get("name", "").split(",") if name))
    match, fmt, cache = seen.get("match"), seen.get("fmt"), seen.get("cache")
    if "name" in seen and "match" in seen:
        raise PolicyError(400, "bad_query", "give name= or match=, not both")
    if "name" in seen and (not names or not all(VAR_NAME.fullmatch(name) for name in names)):
        raise PolicyError(
            400, "bad_parameter", "name= takes /sys/... variable names, comma separated"
        )
    if len(names) > 64:
        raise PolicyError(400, "bad_parameter", "name= takes at most 64 names")
    if match is not None and not MATCH.fullmatch(match):
        raise PolicyError(400, "bad_parameter", "match= takes a part of a variable name")
    if fmt is not None and fmt not in ("obj", "list"):
        raise PolicyError(400, "bad_parameter", "fmt= is obj or list")
    if cache is not None and not CACHE_ID.fullmatch(cache):
        raise PolicyError(400, "bad_parameter", "cache= takes a short name (A-Z, 0-9, _ -)")
    write = seen.get("set")
    if write is not None and not SET_VALUE.fullmatch(write):
        raise PolicyError(400, "bad_parameter", "set= takes /sys/...=value")
    query = VarsQuery(names, match, fmt, cache, write)
    if not query.selects and cache is None and query.write is None:
        raise PolicyError(400, "bad_query", "/vars needs name=, match= or cache=")
    return query


# The variable trees every device read brings in: queries within them are answered from
# the bridge's memory. A `match=` is held only when anchored in one (a bare substring
# could match variables elsewhere that the bridge does not hold).
HELD_TREES = ("/sys/info/", "/sys/devices/")


def held(query: VarsQuery) -> bool:
    """Whether every variable `query` can select is among those the device read holds."""
    if query.names:
        return all(name.startswith(HELD_TREES) for name in query.names)
    return query.match is not None and query.match.startswith(HELD_TREES)


def select(query: VarsQuery, variables: Mapping[str, str]) -> list[str]:
    """The names `query` selects from `variables`, in the PVS's order."""
    if query.names:
        return [name for name in query.names if name in variables]
    return [name for name in variables if (query.match or "") in name]


def render(query: VarsQuery, variables: Mapping[str, str], names: list[str]) -> bytes:
    """A varserver answer in the form asked for (`fmt=obj`, else the list form)."""
    document: object
    if query.fmt == "obj":
        document = {name: variables[name] for name in names}
    else:
        values = [{"name": name, "value": variables[name]} for name in names]
        document = {"count": len(names), "values": values}
    return (json.dumps(document, indent=2) + "\n").encode()


NOTHING_MATCHED = b'{ "status":400, "error" : "Bad Request", "path":"/vars" }\n'
