"""The 2025 API on the client side: `/auth?login`, `/auth?logout` and `/vars`, on either firmware.

Clients written for new firmware log in to the bridge as they would to the PVS. The
bridge keeps its own client sessions (per address at most `clients.max_sessions_per_address`),
checks Basic `ssm_owner:<password>` against the PVS password it knows (or takes any
credentials when `clients.trusted_lan` is set), and answers `/vars`. On 2025 firmware:
variables the device read already holds (`/sys/info/*`, `/sys/devices/*`) from memory, at
the device list's age; the rest from a shared cache, so identical queries from any number
of clients cost one PVS call per `upstream.vars_interval`. On legacy firmware: everything
from the device list rendered as the varserver tree (`web/vars_held`). Variables in
`clients.hidden_vars` never get out, nor does a query for them get in (`web/hidden`).
`cache=<id>` is kept per client session, and `set=` is refused unless writes are
enabled; then, with the write token, it is sent once.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import quote

from aiohttp import web

from bridge.cache.answers import AnswerCache
from bridge.config import ClientsConfig, WritesConfig
from bridge.pvs.credentials import USER, basic_credentials, derive_password
from bridge.pvs.detect import NEW
from bridge.pvs.devices import DeviceReader
from bridge.pvs.errors import BadAnswer, UpstreamError
from bridge.pvs.firmware import FirmwareBackend
from bridge.pvs.requests import CacheClass, ProxyRequest, Route
from bridge.web.auth import bearer_matches
from bridge.web.client_sessions import ClientSession, ClientSessions
from bridge.web.errors import json_error
from bridge.web.hidden import HiddenVars, nothing_matched
from bridge.web.metrics import Metrics
from bridge.web.policy import PolicyError
from bridge.web.ratelimit import RateLimiter, wait_turn
from bridge.web.replay import X_CACHE, from_lookup, replay, upstream_error
from bridge.web.vars_held import HeldVars
from bridge.web.vars_query import MAX_CACHE_IDS, MAX_QUERY_BYTES, VarsQuery, held, parse_vars

log = logging.getLogger(__name__)

VARS_ROUTE = Route("vars", CacheClass.STATUS)
# The PVS serves these without a session, so the bridge asks for them without one too
# (they keep working while its own login is refused or backing off).
PRE_LOGIN_VARS_ROUTE = Route("vars (pre-login)", CacheClass.STATUS)


class VarsService:
    """Handlers for `/auth` and `/vars`."""

    def __init__(
        self,
        clients: ClientsConfig,
        writes: WritesConfig,
        *,
        backend: FirmwareBackend,
        devices: DeviceReader,
        device_cache: AnswerCache,
        vars_cache: AnswerCache,
        sessions: ClientSessions,
        hidden: HiddenVars,
        password_configured: bool,
        limiter: RateLimiter | None,
        metrics: Metrics,
    ) -> None:
        self.trusted_lan = clients.trusted_lan
        self.writes = writes
        self.backend = backend
        self.devices = devices
        self.device_cache = device_cache
        self.cache = vars_cache
        self.hidden = hidden
        self.held = HeldVars(devices, device_cache, hidden)
        self.password_configured = password_configured
        self.sessions = sessions
        self.limiter = limiter
        self.metrics = metrics
        self.refused_logins = 0

    async def auth(self, request: web.Request) -> web.Response:
        """GET /auth?login (Basic ssm_owner:<password>) and GET /auth?logout."""
        response = await self._auth(request)
        self.metrics.count_response(response.status, "NONE")
        return response

    async def _auth(self, request: web.Request) -> web.Response:
        if "logout" in request.query:
            self.sessions.drop(request.cookies.get("session"))
            return web.json_response({"result": "succeed"})
        if "login" not in request.query:
            return json_error(400, "bad_request", "use /auth?login or /auth?logout")
        if not self.trusted_lan:
            refused = await self._check_login(request)
            if refused is not None:
                return refused
        token = self.sessions.create(request.remote or "unknown")
        response = web.json_response({"session": token})
        response.set_cookie("session", token, httponly=True, secure=request.secure, path="/")
        return response

    async def _check_login(self, request: web.Request) -> web.Response | None:
        credentials = basic_credentials(request.headers.get("Authorization", ""))
        try:
            expected = await self._password()
        except UpstreamError as error:
            return upstream_error(error)
        given = f"{credentials[0]}:{credentials[1]}" if credentials else ""
        if hmac.compare_digest(given.encode(), f"{USER}:{expected}".encode()):
            return None
        self.refused_logins += 1
        return json_error(
            401,
            "unauthorized",
            f"log in with Basic {USER}:<the PVS password>",
            headers={"WWW-Authenticate": 'Basic realm="pvs-bridge"'},
        )

    async def _password(self) -> str:
        """`upstream.password`, else the last 5 of the serial: on legacy firmware the
        device list's (no extra PVS request), on 2025 firmware supervisor/info's."""
        if self.password_configured or await self.backend.detector.detect() == NEW:
            return await self.backend.password()
        return derive_password(await self.held.legacy_serial())

    async def vars(self, request: web.Request) -> web.Response:
        """GET or POST /vars."""
        try:
            response = await self._vars(request)
        except PolicyError as refusal:
            response = json_error(refusal.status, refusal.error, refusal.message)
        self.metrics.count_response(response.status, response.headers.get(X_CACHE, "NONE"))
        return response

    async def _vars(self, request: web.Request) -> web.Response:
        query = parse_vars(await _raw_query(request))
        session = self.sessions.get(request.cookies.get("session"))
        if session is None and not query.pre_login:
            return json_error(401, "unauthorized", "log in first: GET /auth?login")
        if query.write is not None:
            return await self._write(request, query.write)
        resolved = _resolve_cache_id(query, session)
        if isinstance(resolved, web.Response):
            return resolved
        try:
            if await self.backend.detector.detect() != NEW:
                return await self.held.on_legacy(resolved)
            if held(resolved):
                return await self._held(request, resolved)
            return await self._from_pvs(request, resolved)
        except BadAnswer as error:
            if error.answer.status >= 400:
                return replay(error.answer, "MISS")
            return upstream_error(error)
        except UpstreamError as error:
            return upstream_error(error)

    async def _held(self, request: web.Request, query: VarsQuery) -> web.Response:
        """Variables the device read holds, aged like the device list they came with.

        Pre-login names are never worth a device read (it needs the bridge's login):
        without one held, they go to the PVS as the PVS serves them, without a session.
        """
        answer = self.held.answer(query, legacy=False)
        if answer is None and not query.pre_login:
            answer = await self.held.after_read(query, legacy=False)
        return answer or await self._from_pvs(request, query)

    async def _from_pvs(self, request: web.Request, query: VarsQuery) -> web.Response:
        """Through the shared `/vars` cache; hidden names never go (none left: a 400 here)."""
        asked = self.hidden.for_pvs(query)
        if asked is None:
            return replay(nothing_matched(), "NONE")
        route = PRE_LOGIN_VARS_ROUTE if asked.pre_login else VARS_ROUTE
        proxy_request = ProxyRequest(route, asked.target())
        lookup = self.cache.from_memory(proxy_request)
        if lookup is None:
            limited = await wait_turn(self.limiter, request)
            if limited is not None:
                return limited
            lookup = await self.cache.get(proxy_request)
        return from_lookup(lookup)

    async def _write(self, request: web.Request, assignment: str) -> web.Response:
        """`set=` reaches the PVS only with writes enabled and the write token: once, uncached.
        A hidden variable is never written (nor named in the log)."""
        if self.hidden.hides(assignment.partition("=")[0]):
            return json_error(403, "hidden_variable", "set= of a hidden variable is refused")
        if not self.writes.enabled:
            return json_error(403, "write_not_allowed", "set= is a write; writes are disabled")
        if not bearer_matches(request.headers.get("Authorization"), self.writes.token):
            return json_error(401, "unauthorized", "set= needs Authorization: Bearer <token>")
        if await self.backend.detector.detect() != NEW:
            return json_error(404, "not_on_this_firmware", "the PVS runs legacy firmware")
        log.warning("forwarding a varserver write for %s", assignment.partition("=")[0])
        try:
            target = "/vars?set=" + quote(assignment, safe="/=,:")
            answer = await self.backend.translator.write_vars(target)
        except BadAnswer as error:
            return replay(error.answer, "BYPASS")
        except UpstreamError as error:
            return upstream_error(error)
        if answer.ok:
            self.devices.forget_variables()  # held values may be what the write changed
        return replay(answer, "BYPASS")

    def describe(self) -> dict[str, object]:
        """Client sessions and the shared /vars cache, for /health."""
        return {
            "client_sessions": self.sessions.live,
            "client_addresses": self.sessions.addresses,
            "client_sessions_replaced": self.sessions.replaced,
            "client_logins_refused": self.refused_logins,
            "vars_cache": {
                "entries": len(self.cache.snapshot()),
                "served": dict(self.cache.counts),
            },
        }


async def _raw_query(request: web.Request) -> str:
    if request.method != "POST":
        return request.rel_url.raw_query_string
    body = await request.content.read(MAX_QUERY_BYTES + 1)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(400, "bad_encoding", "body is not valid UTF-8") from None


def _resolve_cache_id(query: VarsQuery, session: ClientSession | None) -> VarsQuery | web.Response:
    """The query a `cache=<id>` stands for, remembering new ids in the client's session."""
    if not query.selects:
        known = session.caches.get(query.cache or "") if session is not None else None
        if known is None:
            return json_error(400, "unknown_cache", f"no cache named {query.cache!r}")
        return known
    if query.cache is not None and session is not None:
        if len(session.caches) >= MAX_CACHE_IDS and query.cache not in session.caches:
            session.caches.pop(next(iter(session.caches)))
        session.caches[query.cache] = VarsQuery(query.names, query.match, query.fmt)
    return query
