"""Where and how the feed's socket is opened: its URL, and a client session of its own.

The session is apart from the HTTP client's (whose connector holds the gate's one slot):
a WebSocket lives for minutes. It keeps no cookies and follows no redirect.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from bridge.pvs.client import USER_AGENT

FEED_PORT = 9002


def resolve_url(ws_url: str, upstream_url: str) -> str | None:
    """`upstream.ws_url` made concrete: "" is port 9002 on the PVS's host, "off" is none."""
    if ws_url.strip().lower() == "off":
        return None
    if ws_url.strip():
        return ws_url.strip()
    host = URL(upstream_url).host
    return str(URL.build(scheme="ws", host=host, port=FEED_PORT, path="/")) if host else None


def shown_url(url: str | None) -> str | None:
    """The URL as /health shows it: no user, password or query (they could hold secrets)."""
    return None if url is None else str(URL(url).with_user(None).with_query(None))


async def _refuse_redirect(
    _session: aiohttp.ClientSession,
    _context: object,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    """ws_connect has no allow_redirects: a redirect is refused here, before aiohttp follows
    it (nothing at the PVS's feed port redirects; whatever does is not the PVS)."""
    response = params.response
    response.close()
    raise aiohttp.WSServerHandshakeError(
        response.request_info,
        (response,),
        status=response.status,
        message="redirect refused",
        headers=response.headers,
    )


def open_session(connect_timeout: float) -> aiohttp.ClientSession:
    """The feed's own client session (call it inside the running event loop)."""
    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(_refuse_redirect)
    return aiohttp.ClientSession(
        # The total bounds the handshake only: aiohttp stops it once the socket is up.
        timeout=aiohttp.ClientTimeout(total=connect_timeout),
        headers={"User-Agent": USER_AGENT},
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=[trace],
    )
