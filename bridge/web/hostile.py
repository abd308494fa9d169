"""Hostile input: what no PVS client sends is refused before any handler, in JSON.

Checked for every route by the guard: only origin-form targets (never
`http://host/...` nor `host:port`), no dot segments or encoded slashes, a sane Host,
UTF-8 headers without control characters, bounded queries and bodies, safe methods.
The HTTP parser's own limits (request line, header size and count) come first; see
`runner`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import HttpVersion10, web

from bridge.aiohttp_private import answer_as_http11
from bridge.web.errors import json_error

MAX_LINE = 2048  # request line: the longest allowed query is 1024 bytes
MAX_FIELD = 4096  # one header line
MAX_HEADERS = 48
MAX_QUERY = 1024
MAX_BODY_DEFAULT = 4096  # for requests refused before any app (and its config) is involved
MEMO_KEY_BYTES = 4096  # the largest header set whose verdict is kept (see Verdicts)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The 2025 API's varserver takes its query as a POST body (at most 1024 bytes on the
# PVS); the application's client_max_size bounds what the handler reads of it.
BODY_ROUTES = frozenset({("POST", "/vars")})
_HOST = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}"
    r"[A-Za-z0-9_])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed in a value


def _refuse(status: int, error: str, message: str) -> web.Response:
    response = json_error(status, error, message)
    response.force_close()
    return response


class Verdicts:
    """Memoised verdicts on client input, bounded in entries and in bytes.

    Clients repeat the same few paths and header sets for ever, so verdicts are kept; but
    the input is the client's to choose, so only small inputs are (a memo keyed on 48
    header lines of 4 KB each held 185 KB per entry): it holds at most `entries` inputs
    of at most `key_bytes` each. Larger ones, rare from a real client, are judged anew.
    """

    def __init__(self, judge: Callable[[Any], str | None], entries: int, key_bytes: int) -> None:
        self.judge = judge
        self.entries = entries
        self.key_bytes = key_bytes
        self.held: dict[Any, tuple[str | None, int]] = {}  # input -> (verdict, its size)

    def __call__(self, raw: Any, size: Callable[[Any], int] = len) -> str | None:
        known = self.held.get(raw)
        if known is not None:
            return known[0]
        verdict = self.judge(raw)
        nbytes = size(raw)
        if nbytes <= self.key_bytes:
            if len(self.held) >= self.entries:
                del self.held[next(iter(self.held))]  # the oldest
            self.held[raw] = (verdict, nbytes)
        return verdict

    def held_bytes(self) -> int:
        """The bytes of client input held (at most entries * key_bytes)."""
        return sum(nbytes for _verdict, nbytes in self.held.values())


# Paths need no Verdicts: the parser's MAX_LINE already bounds each one (1024 of them hold
# at most 2 MB), so a plain lru_cache, the cheapest lookup on the hot path, is bounded.
@functools.lru_cache(maxsize=1024)
def _bad_path(raw_path: str) -> str | None:
    """Why a raw origin-form path is refused (None when it is fine)."""
    path = raw_path.partition("?")[0]
    if not path.startswith("/") or path.startswith("//"):
        return "the request target must be a path on this bridge"
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return "the path is not valid UTF-8"
    if _CONTROL.search(decoded) or "\\" in decoded:
        return "the path contains control characters or backslashes"
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered or "//" in decoded:
        return "the path contains an encoded or empty segment"
    if any(segment in (".", "..") for segment in decoded.split("/")):
        return "the path contains a dot segment"
    return None


def _judge_headers(raw_headers: tuple[tuple[bytes, bytes], ...]) -> str | None:
    """Why a request's raw header lines are refused (None when they are fine)."""
    hosts = [value for name, value in raw_headers if name.lower() == b"host"]
    if len(hosts) > 1:
        return "more than one Host header"
    for name, value in raw_headers:
        try:
            name.decode("utf-8")
            value.decode("utf-8")
        except UnicodeDecodeError:
            shown = name.decode("utf-8", "replace")
            return f"header {shown!r} is not valid UTF-8"
        if _CONTROL_BYTES.search(value):
            return "a header contains control characters"
    if hosts and not _HOST.fullmatch(hosts[0].decode("utf-8")):
        return "the Host header is not a host name or address with an optional port"
    return None


def headers_size(raw_headers: tuple[tuple[bytes, bytes], ...]) -> int:
    """The bytes of a request's header names and values."""
    return sum(len(name) + len(value) for name, value in raw_headers)


_bad_headers = Verdicts(_judge_headers, entries=256, key_bytes=MEMO_KEY_BYTES)


async def refuse_hostile(request: web.Request, max_body: int) -> web.Response | None:
    """A JSON refusal for a request no PVS client sends, or None to let it through."""
    refusal = refuse_at_once(request)
    if refusal is None and request.body_exists:
        refusal = await refuse_body(request, max_body)
    return refusal


def refuse_at_once(request: web.Request) -> web.Response | None:
    """The checks that need no reading: target, path, query, headers, method."""
    raw = request.raw_path
    if not raw.startswith("/"):
        if request.version < HttpVersion10:
            answer_as_http11(request)
        return _refuse(
            400, "absolute_target", "only paths on this bridge are served, never other hosts"
        )
    why = _bad_path(raw)
    if why is not None:
        return _refuse(400, "bad_path", why)
    path, _, query = raw.partition("?")
    if len(query) > MAX_QUERY:
        return _refuse(414, "query_too_long", f"query longer than {MAX_QUERY} bytes")
    why = _bad_headers(request.raw_headers, headers_size)
    if why is not None:
        return _refuse(400, "bad_header", why)
    method = request.method
    if (method, path) in BODY_ROUTES:
        return None
    if method not in SAFE_METHODS:
        response = _refuse(
            405,
            "method_not_allowed",
            f"method {method} is not allowed; the bridge is read-only (GET, HEAD, OPTIONS)",
        )
        response.headers["Allow"] = "GET, HEAD, OPTIONS"
        return response
    return None


async def refuse_body(request: web.Request, max_body: int) -> web.Response | None:
    """A body no read needs must still be small (POST /vars bodies are read by their handler)."""
    if (request.method, request.raw_path.partition("?")[0]) in BODY_ROUTES:
        return None
    if await _body_too_large(request, max_body):
        return _refuse(413, "body_too_large", f"request body over {max_body} bytes")
    return None


async def _body_too_large(request: web.Request, limit: int) -> bool:
    """Read (and drop) a body nobody needs, stopping as soon as it passes `limit`."""
    if request.content_length is not None and request.content_length > limit:
        return True
    seen = 0
    while not request.content.at_eof():
        chunk = await request.content.read(limit + 1 - seen)
        if not chunk:
            break
        seen += len(chunk)
        if seen > limit:
            return True
    return False
