"""The client-facing handler for `/cgi-bin/dl_cgi`: policy, cache, rate limit, answer.

Data flows one way: the policy refuses or normalises, the cache answers from memory
(never refused for rate) or, for a miss, after the client's rate-limit turn, through the
backend. DeviceDetails reaches the PVS only for serials the site snapshot knows: an
unknown serial is answered 404 from memory. Answers reach the client with the PVS's
status, body bytes and content type untouched, plus Age / X-Cache headers. The one
departure is `supervisor/info` when `clients.advertise_2025_build` is on (`SupervisorInfo`).
A write's Host is checked before the handler runs (`is_write`, see `hosts` and `routes`).
"""

from __future__ import annotations

from aiohttp import web

from bridge.cache.answers import AnswerCache
from bridge.pvs.backend import Backend
from bridge.pvs.detect import advertise_2025_build
from bridge.pvs.devices import DeviceReader
from bridge.pvs.errors import BadAnswer, UpstreamError
from bridge.pvs.requests import DEVICE_LIST, ProxyRequest
from bridge.web.errors import json_error
from bridge.web.metrics import Metrics
from bridge.web.policy import Policy, PolicyError
from bridge.web.ratelimit import RateLimiter, wait_turn
from bridge.web.replay import X_CACHE, from_lookup, replay, upstream_error

INFO_TAIL = "supervisor/info"
BUILD_HEADER = "X-PVS-Bridge-Build"


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

    def is_write(self, request: web.Request) -> bool:
        """Whether the request is an allowed write command (refusals are not)."""
        try:
            proxy_request = self.policy.classify(
                request.match_info.get("tail", ""), request.rel_url.raw_query_string
            )
        except PolicyError:
            return False
        return proxy_request.route.write

    async def handle(self, request: web.Request) -> web.Response:
        """GET/HEAD /cgi-bin/dl_cgi[/path]: what `at_once` left (misses, writes, refusals)."""
        return await self.answer(request, request.match_info.get("tail", ""))

    async def answer(self, request: web.Request, tail: str) -> web.Response:
        """`handle` for the path `/cgi-bin/dl_cgi[/tail]`, counted."""
        response = await self._answer(request, tail)
        self.metrics.count_response(response.status, response.headers.get(X_CACHE, "NONE"))
        return response

    async def _answer(self, request: web.Request, tail: str) -> web.Response:
        try:
            proxy_request = self.policy.classify(tail, request.rel_url.raw_query_string)
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


class SupervisorInfo:
    """`/cgi-bin/dl_cgi/supervisor/info` for clients, saying a 2025-level build.

    Its own route (matched before the dl_cgi path route) only while
    `clients.advertise_2025_build` is on. Clients such as Enhanced SunPower choose the
    2025 API by the build this answer states, and the bridge serves that API in front of
    a legacy PVS too, so a legacy build is said as the first 2025 one
    (`detect.advertise_2025_build`): a deliberate, configurable departure from
    byte-exactness for this one answer, shown by the `X-PVS-Bridge-Build` header. The
    cache keeps (and the key is) the PVS's own answer, and the firmware detector asks the
    PVS itself, so only what clients get changes. On 2025 firmware (a 2025 build
    already) the answer is the PVS's, byte for byte.
    """

    def __init__(self, dl_cgi: DlCgi) -> None:
        self.dl_cgi = dl_cgi
        self.request = dl_cgi.policy.classify(INFO_TAIL, "")

    def at_once(self, request: web.Request) -> web.Response | None:
        """A cache hit, as `DlCgi.at_once` answers it, then advertised."""
        lookup = self.dl_cgi.cache.from_memory(self.request)
        if lookup is None:
            return None
        self.dl_cgi.metrics.count_response(lookup.answer.status, lookup.state)
        return advertised(from_lookup(lookup))

    async def handle(self, request: web.Request) -> web.Response:
        """What `at_once` left, as `DlCgi.handle` answers it, then advertised."""
        return advertised(await self.dl_cgi.answer(request, INFO_TAIL))


def advertised(response: web.Response) -> web.Response:
    """A 200 `supervisor/info` answer saying a 2025-level build (memoised: a hit costs a
    lookup); any other answer as it is."""
    body = response.body
    if response.status != 200 or not isinstance(body, bytes):
        return response
    said = advertise_2025_build(body)
    if said is not None:
        response.body = said.body
        response.headers[BUILD_HEADER] = f"rewritten: {said.true_build} said as {said.said_build}"
    return response
