"""Every use of aiohttp's private API, in one place, each with why no public API serves.

tests/test_hostile.py and tests/test_gate.py fail loudly if aiohttp changes under these.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import HttpVersion11
from aiohttp.web_request import BaseRequest


def never_resend(session: aiohttp.ClientSession) -> None:
    """Stop aiohttp resending an idempotent request once when the connection drops.

    aio-libs/aiohttp#10790, no public switch: a second request to a PVS that just reset
    us is exactly the retry the backoff exists to prevent.
    """
    session._retry_connection = False


def answer_as_http11(request: BaseRequest) -> None:
    """A request line without a target parses as HTTP/0.9, and aiohttp would answer with
    an "HTTP/0.9 400" status line no client can read; no public API sets the version."""
    request._version = HttpVersion11
    request._cache.pop("version", None)


def swap_server_class(server: Any, cls: type) -> None:
    """Same server state, another protocol factory: aiohttp has no public hook for the
    request handler class a Server builds, and parser errors are only seen there."""
    server.__class__ = cls


def awaiting_request(handler: Any) -> bool:
    """Whether a connection is between requests: its request head not (yet) complete.

    aiohttp decides "idle" the same way in RequestHandler._process_keepalive, and has no
    public way to ask; the connection caps close idle connections first, and a request
    head that takes too long is only seen from here (see bridge.web.connections).
    """
    waiter = handler._waiter
    return waiter is not None and not waiter.done()
