"""The route table: every path the bridge answers, each registered with its guarded handler.

What is registered here is what runs: `Guards.wrap` builds the one handler per route
(hostile input refused, JSON errors, CORS for browsers), and each CORS-enabled route
gets its own guarded preflight. The catch-all comes last and answers JSON 404s.

Two groups of routes answer browsers differently (`Access`): the read-only legacy API,
`/health`, `/metrics`, `/site.json` and `/live` keep `cors.origins` and answer any `Host`,
as the PVS does; the 2025 session API (`/auth`, `/vars`) answers CORS only for
`cors.api_origins` and only allowed Host names (`hosts`). Write commands share the dl_cgi
routes (and their `cors.origins`) but not the Host leniency: they too answer only allowed
Host names, checked once the request is known to be a write, never on the cache-hit path.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bridge.config import Config
from bridge.web.cors import API_METHODS, CorsPolicy
from bridge.web.dl_cgi import INFO_TAIL, DlCgi, SupervisorInfo
from bridge.web.guard import AtOnce, Check, Guards, Handler, not_found
from bridge.web.health import HealthReporter
from bridge.web.home import HomePage
from bridge.web.hosts import AllowedHosts
from bridge.web.live import LiveHub, add_live_route
from bridge.web.metrics import MetricsPage
from bridge.web.vars_api import VarsService


@dataclass(frozen=True)
class Handlers:
    """Everything the routes answer with."""

    dl_cgi: DlCgi
    health: HealthReporter
    metrics: MetricsPage
    home: HomePage
    vars_api: VarsService
    live: LiveHub


@dataclass(frozen=True)
class Access:
    """Who may use which routes: CORS per route group, the Host names the session API and
    writes answer, and whether supervisor/info says a 2025-level build."""

    cors: CorsPolicy  # the read-only legacy API, /health, /metrics, /live
    api_cors: CorsPolicy  # /auth, /vars
    hosts: AllowedHosts
    advertise_2025_build: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Access:
        """The access rules of `config` (`cors`, `server.hostnames`, `clients`)."""
        return cls(
            CorsPolicy(frozenset(config.cors.origins)),
            CorsPolicy(frozenset(config.cors.api_origins), API_METHODS),
            AllowedHosts.from_config(config.server.hostnames),
            config.clients.advertise_2025_build,
        )


def add_routes(app: web.Application, guards: Guards, handlers: Handlers, access: Access) -> None:
    """Register every route, guarded; call once, on a new application."""
    cors = access.cors

    def read(
        path: str, handler: Handler, at_once: AtOnce | None = None, hosts: Check | None = None
    ) -> None:
        app.router.add_get(path, guards.wrap(handler, cors=cors, at_once=at_once, hosts=hosts))
        app.router.add_route("OPTIONS", path, guards.wrap(cors.preflight))

    dl_cgi = handlers.dl_cgi
    writes = access.hosts.for_writes(dl_cgi.is_write)  # writes are query-style only
    read("/cgi-bin/dl_cgi", dl_cgi.handle, at_once=dl_cgi.at_once, hosts=writes)
    if access.advertise_2025_build:
        info = SupervisorInfo(dl_cgi)
        read(f"/cgi-bin/dl_cgi/{INFO_TAIL}", info.handle, at_once=info.at_once)
    read("/cgi-bin/dl_cgi/{tail:.+}", dl_cgi.handle, at_once=dl_cgi.at_once)
    read("/health", handlers.health.handle)
    read("/metrics", handlers.metrics.handle)
    app.router.add_get("/", guards.wrap(handlers.home.handle))
    read("/site.json", handlers.home.site)
    add_api_routes(app, guards, handlers.vars_api, access)
    add_live_route(app, handlers.live, guards, cors)
    app.router.add_route("*", "/{anything:.*}", guards.wrap(not_found))


def add_api_routes(
    app: web.Application, guards: Guards, vars_api: VarsService, access: Access
) -> None:
    """The 2025 session API: allowed Host names only, CORS for `cors.api_origins` only."""
    cors, hosts = access.api_cors, access.hosts.check
    for path, handler in (("/auth", vars_api.auth), ("/vars", vars_api.vars)):
        app.router.add_get(path, guards.wrap(handler, cors=cors, hosts=hosts))
        app.router.add_route("OPTIONS", path, guards.wrap(cors.preflight, hosts=hosts))
    app.router.add_post("/vars", guards.wrap(vars_api.vars, cors=cors, hosts=hosts))
