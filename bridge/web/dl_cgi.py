"""The client-facing handler for `/cgi-bin/dl_cgi`: policy, cache, rate limit, answer.

Data flows one way: the policy refuses or normalises, the cache answers from memory
(never refused for rate) or, for a miss, after the client's rate-limit turn, through the
backend. DeviceDetails reaches the PVS only for serials the site snapshot knows: an
unknown serial is answered 404 from memory. Answers reach the client with the PVS's
status, body bytes and content type untouched, plus Age / X-Cache headers.
"""

from __future__ import annotations

from aiohttp import web

from bridge.cache.answers import AnswerCache
from bridge.pvs.backend import Backend
from bridge.pvs.devices import DeviceReader
from bridge.pvs.errors import BadAnswer, UpstreamError
from bridge.pvs.requests import DEVICE_LIST, ProxyRequest
from bridge.web.errors import json_error
from bridge.web.metrics import Metrics
from bridge.web.policy import Policy, PolicyError
from bridge.web.ratelimit import RateLimiter, wait_turn
from bridge.web.replay import X_CACHE, from_lookup, replay, upstream_error


class DlCgi:
    """Answers dl_cgi requests as the PVS would, from memory whenever it can."""

    def __init__(
        self,
        policy: Policy,
        cache: AnswerCache,
        backend: Backend,
        devices: DeviceReader,
        limiter: RateLimiter | None,
        metrics: Metrics,
    ) -> None:
        self.policy = policy
        self.cache = cache
        self.backend = backend
        self.devices = devices
        self.limiter = limiter
        self.metrics = metrics

    def at_once(self, request: web.Request) -> web.Response | None:
        """Cache hits, with nothing to wait for; None sends it to `handle`."""
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

    async def handle(self, request: web.Request) -> web.Response:
        """GET/HEAD /cgi-bin/dl_cgi[/path]: what `at_once` left (misses, writes, refusals)."""
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
            unknown = await self._unknown_device(proxy_request)
            if unknown is not None:
                return unknown
            lookup = self.cache.from_memory(proxy_request)  # filled while we waited?
            if lookup is None:
                limited = await wait_turn(self.limiter, request)
                if limited is not None:
                    return limited
                lookup = await self.cache.get(proxy_request)
        except BadAnswer as error:
            if error.answer.status >= 400:
                return replay(error.answer, "MISS")  # what the PVS said, as it said it
            return upstream_error(error)
        except UpstreamError as error:
            return upstream_error(error)
        return from_lookup(lookup)

    async def _unknown_device(self, proxy_request: ProxyRequest) -> web.Response | None:
        """A 404 for a DeviceDetails serial the site does not have (never asked of the PVS)."""
        if proxy_request.name != "DeviceDetails":
            return None
        if self.devices.snapshot is None:
            await self.cache.get(DEVICE_LIST)  # the one device read, shared as always
        snapshot = self.devices.snapshot
        serial = dict(proxy_request.params).get("SerialNumber", "")
        # No snapshot (a device list the bridge could not read): the PVS must say.
        if snapshot is not None and snapshot.find(serial) is None:
            return json_error(
                404, "unknown_device", f"no device with serial {serial!r} in the device list"
            )
        return None

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
