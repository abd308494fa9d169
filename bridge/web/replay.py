"""Answers as clients get them: the PVS's bytes with cache headers, or a JSON error."""

from __future__ import annotations

import math

from aiohttp import web
from multidict import istr

from bridge.cache.entries import Lookup
from bridge.pvs.answer import Answer
from bridge.pvs.errors import UpstreamError
from bridge.web.errors import json_error

X_CACHE = istr("X-Cache")  # pre-folded: looked up on every answer


def replay(answer: Answer, state: str, extra: tuple[tuple[str, str], ...] = ()) -> web.Response:
    """The PVS's answer as it sent it, with the bridge's cache headers added."""
    # One header tuple, one multidict: this is the hot path of every cache hit.
    headers = (*answer.replay_headers, ("X-Cache", state), *extra)
    return web.Response(status=answer.status, body=answer.body, headers=headers)


def from_lookup(lookup: Lookup) -> web.Response:
    """A cached answer with Age, X-Cache, Cache-Control and, when stale, Warning."""
    answer = lookup.answer
    key = (lookup.state, max(0, math.floor(lookup.age)), max(0, math.floor(lookup.fresh_for)))
    headers = answer.header_memo.get(key)
    if headers is None:
        headers = (
            *answer.replay_headers,
            ("X-Cache", lookup.state),
            ("Age", str(key[1])),
            ("Cache-Control", f"max-age={key[2]}"),
        )
        if lookup.warning:
            headers = (*headers, ("Warning", lookup.warning))
        if len(answer.header_memo) > 8:
            answer.header_memo.clear()  # bounded: only the current second matters
        answer.header_memo[key] = headers
    return web.Response(status=answer.status, body=answer.body, headers=headers)


def upstream_error(error: UpstreamError) -> web.Response:
    """A JSON error that says what went wrong upstream and how old the last good data is."""
    extra: dict[str, object] = {"cause": getattr(error, "cause", error).kind}
    age = getattr(error, "age", None)
    if getattr(error, "cause", None) is not None:
        extra["last_good_age_s"] = None if age is None else round(age)
    return json_error(
        error.status, error.kind, error.message, retry_after=error.retry_after, extra=extra
    )
