"""The 2025 API on the client side: `/auth?login`, `/auth?logout` and `/vars`.

Clients written for new firmware log in to the bridge as they would to the PVS. The
bridge keeps its own client sessions (bounded, expiring after `clients.session_ttl`),
checks Basic `ssm_owner:<password>` against the PVS password it knows (or takes any
credentials when `clients.trusted_lan` is set), and answers `/vars` through its one
upstream session. A client's session is never sent to the PVS.

`/vars` queries are normalised to one canonical form (`name=` or `match=`, then `fmt=`),
which is the cache key: identical queries from any number of clients share one PVS call
per `upstream.vars_interval`. `cache=<id>` is kept by the bridge per client session
(the PVS's own caches belong to the bridge's session, shared by every client), and
`set=` is refused unless writes are enabled; then, with the write token, it is sent to
the PVS once, never cached and never re-sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

from aiohttp import web
from cachetools import TTLCache

from bridge import ratelimit
from bridge.answer import Answer
from bridge.cache import AnswerCache
from bridge.clock import Clock
from bridge.config import Config
from bridge.errors import json_error
from bridge.firmware import NEW, FirmwareBackend
from bridge.metrics import Metrics
from bridge.policy import CacheClass, PolicyError, ProxyRequest, Route
from bridge.proxy import from_lookup, replay, upstream_error
from bridge.ratelimit import RateLimiter
from bridge.upstream import BadAnswer, UpstreamError

USER = "ssm_owner"
MAX_QUERY_BYTES = 1024
MAX_CACHE_IDS = 16
log = logging.getLogger(__name__)

# What the reference client reads before it logs in (it needs the serial for the password).
PRE_LOGIN_NAMES = frozenset({"/sys/info/serialnum", "/sys/info/ssid", "/sys/info/lmac"})
VAR_NAME = re.compile(r"/[A-Za-z0-9_./-]{1,200}")
MATCH = re.compile(r"[A-Za-z0-9_./-]{1,200}")
CACHE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
SET_VALUE = re.compile(r"(/[A-Za-z0-9_./-]{1,200})=([A-Za-z0-9_.:,/ +-]{0,200})")
VARS_ROUTE = Route("vars", CacheClass.STATUS)
# The pre-login variables: the PVS serves them without a session, so the bridge asks for
# them without one too (they keep working while its own login is refused or backing off).
PRE_LOGIN_VARS_ROUTE = Route("vars (pre-login)", CacheClass.STATUS)
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


@dataclass
class ClientSession:
    """One client's login with the bridge, and the cache ids it defined."""

    caches: dict[str, VarsQuery] = field(default_factory=dict)


class ClientSessions:
    """The bridge's own sessions for new-API clients: random, bounded, expiring."""

    def __init__(self, clock: Clock, *, ttl: float, max_sessions: int) -> None:
        self._sessions: TTLCache[str, ClientSession] = TTLCache(
            maxsize=max_sessions, ttl=ttl, timer=clock.monotonic
        )
        self.created = 0

    def create(self) -> str:
        """A new session id, 64 hex characters like the PVS's."""
        token = secrets.token_hex(32)
        self._sessions[token] = ClientSession()
        self.created += 1
        return token

    def get(self, token: str | None) -> ClientSession | None:
        """The live session for this id, if any."""
        if not token:
            return None
        return self._sessions.get(token)

    def drop(self, token: str | None) -> None:
        """End a session (logout)."""
        if token:
            self._sessions.pop(token, None)

    @property
    def live(self) -> int:
        """How many sessions are live."""
        self._sessions.expire()
        return len(self._sessions)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) from `Authorization: Basic ...` in either case, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class VarsService:
    """Handlers for `/auth` and `/vars`, sharing PVS calls through their own cache."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        backend: FirmwareBackend,
        limiter: RateLimiter | None,
        metrics: Metrics,
    ) -> None:
        clients, up, cache = config["clients"], config["upstream"], config["cache"]
        self.backend = backend
        self.limiter = limiter
        self.metrics = metrics
        self.trusted_lan: bool = clients["trusted_lan"]
        self.writes_enabled: bool = config["writes"]["enabled"]
        self.write_token: str = config["writes"]["token"]
        self.configured_password: str = up["password"]
        self.sessions = ClientSessions(
            clock, ttl=clients["session_ttl"], max_sessions=clients["max_sessions"]
        )
        interval: float = up["vars_interval"]
        self.cache = AnswerCache(
            clock,
            self._fetch,
            lambda _request: interval,
            max_entries=cache["max_entries"],
            max_stale=max(cache["max_stale"], interval),
            idle_after=cache["idle_after"],
            # "Nothing matched" (400) is an answer too: a client repeating a query that
            # matches nothing must not reach the PVS more often than a good one.
            keeps=lambda answer: answer.ok or answer.status == 400,
        )
        self.refused_logins = 0

    async def _fetch(self, request: ProxyRequest) -> Answer:
        if request.route is PRE_LOGIN_VARS_ROUTE:
            return await self.backend.vars_query(request.target, session=False)
        return await self.backend.vars_query(request.target)

    async def _password(self) -> str:
        if self.configured_password:
            return self.configured_password
        return (await self.backend.detector.serial())[-5:].upper()

    async def auth(self, request: web.Request) -> web.Response:
        """GET /auth?login (Basic ssm_owner:<password>) and GET /auth?logout."""
        response = ratelimit.refusal(self.limiter, request) or await self._auth(request)
        self.metrics.count_response(response.status, "NONE")
        return response

    async def _auth(self, request: web.Request) -> web.Response:
        if "logout" in request.query:
            self.sessions.drop(request.cookies.get("session"))
            return web.json_response({"result": "succeed"})
        if "login" not in request.query:
            return json_error(400, "bad_request", "use /auth?login or /auth?logout")
        if not self.trusted_lan:
            credentials = basic_credentials(request.headers.get("Authorization", ""))
            try:
                expected = await self._password()
            except UpstreamError as error:
                return upstream_error(error)
            if credentials is None or not _same(credentials, (USER, expected)):
                self.refused_logins += 1
                return json_error(
                    401,
                    "unauthorized",
                    f"log in with Basic {USER}:<the PVS password> "
                    "(the last 5 characters of the PVS serial unless configured otherwise)",
                    headers={"WWW-Authenticate": 'Basic realm="pvs-bridge"'},
                )
        token = self.sessions.create()
        response = web.json_response({"session": token})
        response.set_cookie("session", token, httponly=True, secure=request.secure, path="/")
        return response

    async def vars(self, request: web.Request) -> web.Response:
        """GET or POST /vars, answered from the shared cache through the bridge's session."""
        response = ratelimit.refusal(self.limiter, request)
        if response is None:
            try:
                response = await self._vars(request)
            except PolicyError as refusal:
                response = json_error(refusal.status, refusal.error, refusal.message)
        self.metrics.count_response(response.status, response.headers.get("X-Cache", "NONE"))
        return response

    async def _vars(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await request.content.read(MAX_QUERY_BYTES + 1)
            try:
                raw = body.decode("utf-8")
            except UnicodeDecodeError:
                raise PolicyError(400, "bad_encoding", "body is not valid UTF-8") from None
        else:
            raw = request.rel_url.raw_query_string
        query = parse_vars(raw)
        session = self.sessions.get(request.cookies.get("session"))
        if session is None and not query.pre_login:
            return json_error(401, "unauthorized", "log in first: GET /auth?login")
        if query.write is not None:
            return await self._write(request, query.write)
        if not query.selects:
            assert session is not None and query.cache is not None
            known = session.caches.get(query.cache)
            if known is None:
                return json_error(400, "unknown_cache", f"no cache named {query.cache!r}")
            query = known
        elif query.cache is not None and session is not None:
            if len(session.caches) >= MAX_CACHE_IDS and query.cache not in session.caches:
                session.caches.pop(next(iter(session.caches)))
            session.caches[query.cache] = VarsQuery(query.names, query.match, query.fmt)
        try:
            if await self.backend.detector.detect() != NEW:
                return json_error(
                    404, "not_on_this_firmware", "the PVS runs legacy firmware: it has no /vars"
                )
            route = PRE_LOGIN_VARS_ROUTE if query.pre_login else VARS_ROUTE
            lookup = await self.cache.get(ProxyRequest(route, query.target()))
        except BadAnswer as error:
            if error.answer.status >= 400:
                return replay(error.answer, "MISS")
            return upstream_error(error)
        except UpstreamError as error:
            return upstream_error(error)
        return from_lookup(lookup)

    async def _write(self, request: web.Request, assignment: str) -> web.Response:
        """`set=` reaches the PVS only with writes enabled and the write token: once, uncached."""
        if not self.writes_enabled:
            return json_error(403, "write_not_allowed", "set= is a write; writes are disabled")
        expected = f"Bearer {self.write_token}"
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return json_error(401, "unauthorized", "set= needs Authorization: Bearer <token>")
        if await self.backend.detector.detect() != NEW:
            return json_error(404, "not_on_this_firmware", "the PVS runs legacy firmware")
        log.warning("forwarding a varserver write for %s", assignment.partition("=")[0])
        try:
            answer = await self.backend.write_vars("/vars?set=" + quote(assignment, safe="/=,:"))
        except BadAnswer as error:
            return replay(error.answer, "BYPASS")
        except UpstreamError as error:
            return upstream_error(error)
        return replay(answer, "BYPASS")

    def describe(self) -> dict[str, object]:
        """Client sessions and the shared /vars cache, for /health."""
        return {
            "client_sessions": self.sessions.live,
            "client_logins_refused": self.refused_logins,
            "vars_cache": {
                "entries": len(self.cache.snapshot()),
                "served": dict(self.cache.counts),
            },
        }


def _same(given: tuple[str, str], expected: tuple[str, str]) -> bool:
    left = f"{given[0]}:{given[1]}".encode()
    return hmac.compare_digest(left, f"{expected[0]}:{expected[1]}".encode())


def setup(app: web.Application, service: VarsService) -> None:
    """Add the routes and close the /vars cache with the app."""
    app.router.add_get("/auth", service.auth)
    app.router.add_get("/vars", service.vars)
    app.router.add_post("/vars", service.vars)
    service.backend.extra["clients"] = service.describe

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        yield
        await service.cache.close()

    app.cleanup_ctx.append(lifecycle)
