"""The route table: every path the bridge answers, each registered with its guarded handler.

What is registered here is what runs: `Guards.wrap` builds the one handler per route
(hostile input refused, JSON errors, CORS for browsers), and each CORS-enabled route
gets its own guarded preflight. The catch-all comes last and answers JSON 404s.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bridge.web.cors import CorsPolicy
from bridge.web.dl_cgi import DlCgi
from bridge.web.guard import AtOnce, Guards, Handler, not_found
from bridge.web.health import HealthReporter
from bridge.web.home import HomePage
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


def add_routes(app: web.Application, guards: Guards, handlers: Handlers, cors: CorsPolicy) -> None:
    """Register every route, guarded; call once, on a new application."""

    def read(path: str, handler: Handler, at_once: AtOnce | None = None) -> None:
        app.router.add_get(path, guards.wrap(handler, cors=cors, at_once=at_once))
        app.router.add_route("OPTIONS", path, guards.wrap(cors.preflight))

    dl_cgi = handlers.dl_cgi
    read("/cgi-bin/dl_cgi", dl_cgi.handle, at_once=dl_cgi.at_once)
    read("/cgi-bin/dl_cgi/{tail:.+}", dl_cgi.handle, at_once=dl_cgi.at_once)
    read("/health", handlers.health.handle)
    read("/metrics", handlers.metrics.handle)
    app.router.add_get("/", guards.wrap(handlers.home.handle))
    vars_api = handlers.vars_api
    app.router.add_get("/auth", guards.wrap(vars_api.auth))
    app.router.add_get("/vars", guards.wrap(vars_api.vars))
    app.router.add_post("/vars", guards.wrap(vars_api.vars))
    add_live_route(app, handlers.live, guards, cors)
    app.router.add_route("*", "/{anything:.*}", guards.wrap(not_found))
