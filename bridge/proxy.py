"""The client-facing handler for `/cgi-bin/dl_cgi`: policy, rate limit, cache, answer.

Data flows one way: the policy refuses or normalises, the limiter may refuse, the
cache answers from memory or through the backend. Answers reach the client with the
PVS's status, body bytes and content type untouched, plus Age / X-Cache headers.
"""

from __future__ import annotations

import math

from aiohttp import web
from multidict import istr

from bridge import ratelimit
from bridge.answer import Answer
from bridge.backend import Backend
from bridge.cache import AnswerCache, Lookup
from bridge.errors import json_error
from bridge.metrics import Metrics
from bridge.policy import Policy, PolicyError, ProxyRequest
from bridge.ratelimit import RateLimiter
from bridge.upstream import BadAnswer, UpstreamError


class Proxy:
    """Answers dl_cgi requests as the PVS would, from memory whenever it can."""

    def __init__(
        self,
        policy: Policy,
        cache: AnswerCache,
        backend: Backend,
        limiter: RateLimiter | None,
        metrics: Metrics,
    ) -> None:
        self.policy = policy
        self.cache = cache
        self.backend = backend
        self.limiter = limiter
        self.metrics = metrics

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET/HEAD /cgi-bin/dl_cgi[/path] (the guard splits it: see hardening.answer_at_once)."""
        return self.at_once(request) or await self.the_long_way(request)

    def at_once(self, request: web.Request) -> web.Response | None:
        """Rate limit and cache hits, with nothing to wait for: None sends it the long way."""
        limited = ratelimit.refusal(self.limiter, request)
        if limited is not None:
            self.metrics.count_response(limited.status, "NONE")
            return limited
        try:
            proxy_request = self.policy.classify(
                request.match_info.get("tail", ""), request.rel_url.raw_query_string
            )
        except PolicyError:
            return None
        if proxy_request.route.write:
            return None
        lookup = self.cache.from_memory(proxy_request)
        if lookup is None:
            return None
        self.metrics.count_response(lookup.answer.status, lookup.state)
        return from_lookup(lookup)

    async def the_long_way(self, request: web.Request) -> web.Response:
        """What `at_once` left: misses, writes, refusals (already rate-counted)."""
        response = await self._answer(request)
        self.metrics.count_response(response.status, response.headers.get(X_CACHE, "NONE"))
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        try:
            proxy_request = self.policy.classify(
                request.match_info.get("tail", ""), request.rel_url.raw_query_string
            )
            if proxy_request.route.write:
                return await self._write(request, proxy_request)
        except PolicyError as refusal:
            return json_error(refusal.status, refusal.error, refusal.message, extra=refusal.extra)
        try:
            lookup = await self.cache.get(proxy_request)
        except BadAnswer as error:
            if error.answer.status >= 400:
                return replay(error.answer, "MISS")  # what the PVS said, as it said it
            return upstream_error(error)
        except UpstreamError as error:
            return upstream_error(error)
        return from_lookup(lookup)

    async def _write(self, request: web.Request, proxy_request: ProxyRequest) -> web.Response:
        """A write command: token checked, sent once, never cached, never retried."""
        if request.method != "GET":
            raise PolicyError(405, "method_not_allowed", "write commands are sent with GET only")
        self.policy.check_write_token(request.headers.get("Authorization"))
        try:
            answer = await self.backend.fetch(proxy_request)
        except BadAnswer as error:
            return replay(error.answer, "BYPASS")
        except UpstreamError as error:
            return upstream_error(error)
        return replay(answer, "BYPASS")


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
