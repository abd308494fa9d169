"""The application factory: every part built once, finished, and wired in one place.

Layers (docs/architecture.md): `web` answers clients, `cache` keeps answers, `pvs` is
the only code that reaches the PVS, `site` is the pure model, `host` is the Pi itself.
Only this module (and the CLI, which runs it) sees all of them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from bridge.app.lifecycle import background, history, live_feed, mqtt, upstream_session, warm_store
from bridge.app.live import build_live
from bridge.cache.answers import AnswerCache
from bridge.cache.night import DayAndNight
from bridge.clock import Clock
from bridge.config import Config
from bridge.host import interfaces
from bridge.host.statefiles import StateDir
from bridge.host.tls_listener import TlsListener
from bridge.pvs.answer import Answer
from bridge.pvs.backoff import Backoff
from bridge.pvs.client import Upstream
from bridge.pvs.firmware import FirmwareBackend, firmware_parts
from bridge.pvs.gate import Gate
from bridge.pvs.record import HealthRecord
from bridge.pvs.requests import CacheClass, ProxyRequest
from bridge.web import keys
from bridge.web.client_sessions import ClientSessions
from bridge.web.dl_cgi import DlCgi
from bridge.web.guard import Guards, Lifecycle
from bridge.web.health import Describe, HealthReporter, Problems
from bridge.web.hidden import HiddenVars
from bridge.web.home import HomePage
from bridge.web.live import feed_app
from bridge.web.metrics import Metrics, MetricsPage
from bridge.web.policy import Policy
from bridge.web.ratelimit import RateLimiter
from bridge.web.routes import Access, Handlers, add_routes
from bridge.web.vars_api import VarsService

log = logging.getLogger(__name__)


def create_app(
    config: Config, *, clock: Clock | None = None, jitter: Callable[[], float] = random.random
) -> web.Application:
    """Build the bridge application from a validated config.

    `clock` and `jitter` (the backoff's randomness) are what tests inject to make
    schedules exact; production uses the real clock and random jitter.
    """
    clock = clock or Clock()
    app = web.Application(client_max_size=config.server.max_request_bytes)
    upstream = _upstream(config, clock, jitter)
    parts = firmware_parts(config.upstream, upstream, clock)
    live = build_live(config, clock, upstream, parts)
    backend = parts.backend(live.devices)
    cache = _answer_cache(config, clock, backend, upstream.backoff)
    limiter = RateLimiter(clock, config.rate_limit) if config.rate_limit.enabled else None
    metrics = Metrics()
    vars_api = _vars_api(config, clock, backend, cache, limiter, metrics)
    state_dir = StateDir(Path(config.server.state_dir))
    tls = TlsListener(wanted=bool(config.server.listen_tls))
    sections = {"clients": vars_api.describe, **live.sections(), "state_dir": state_dir.describe}
    problems = (state_dir.problems, tls.problems)
    health = _health(config, upstream, cache, backend, limiter, sections, problems, tls)
    lifecycle = Lifecycle()
    handlers = Handlers(
        dl_cgi=DlCgi(Policy(config.writes), cache, backend, backend.devices, limiter, metrics),
        health=health,
        metrics=MetricsPage(health, metrics, backend.devices, live.reboots),
        home=HomePage(health, cache, live.devices, live.history, live.hub),
        vars_api=vars_api,
        live=live.hub,
    )
    guards = Guards(lifecycle, config.server.max_request_bytes)
    add_routes(app, guards, handlers, Access.from_config(config))
    app[keys.CONFIG], app[keys.CLOCK], app[keys.UPSTREAM] = config, clock, upstream
    app[keys.CACHE], app[keys.VARS_CACHE], app[keys.BACKEND] = cache, vars_api.cache, backend
    app[keys.DEVICES], app[keys.HEALTH], app[keys.METRICS] = backend.devices, health, metrics
    app[keys.LIFECYCLE], app[keys.FEED] = lifecycle, live.feed
    app[keys.STATE_DIR], app[keys.TLS] = state_dir, tls
    app[keys.FEED_APP] = feed_app(live.hub, guards)
    app.on_shutdown.append(lifecycle.begin_shutdown)
    app.cleanup_ctx.extend([upstream_session, warm_store, history(live), live_feed, background])
    app.cleanup_ctx.append(mqtt(live))  # last: stopped first, saying `offline` cleanly
    return app


def _health(
    config: Config,
    upstream: Upstream,
    cache: AnswerCache,
    backend: FirmwareBackend,
    limiter: RateLimiter | None,
    sections: dict[str, Describe],
    problems: tuple[Problems, ...],
    tls: TlsListener,
) -> HealthReporter:
    """/health, with the sections and degraded reasons of the other parts."""
    upstream_host = urlsplit(upstream.base_url).hostname
    return HealthReporter(
        upstream.clock,
        upstream,
        cache,
        backend,
        limiter,
        lambda: interfaces.describe(config.upstream.interface, upstream_host),
        more={**sections, "tls": tls.describe},
        problems=problems,
    )


def _upstream(config: Config, clock: Clock, jitter: Callable[[], float]) -> Upstream:
    up = config.upstream
    backoff = Backoff(
        clock,
        initial=up.backoff_initial,
        maximum=up.backoff_max,
        threshold=up.breaker_threshold,
        jitter=jitter,
    )
    gate = Gate(
        clock,
        backoff,
        queue_limit=up.queue_limit,
        min_interval=up.min_interval,
    )
    return Upstream(
        interfaces.resolve_upstream_url(up.url, up.interface),
        clock,
        gate,
        HealthRecord(clock),
        connect_timeout=up.connect_timeout,
        verify_tls=up.verify_tls,
        tls_fingerprint=up.tls_fingerprint,
        max_body_bytes=up.max_body_bytes,
        daily_budget=up.daily_budget,
        after_timeout=up.after_timeout,
    )


def _answer_cache(
    config: Config, clock: Clock, backend: FirmwareBackend, backoff: Backoff
) -> AnswerCache:
    """The cache of dl_cgi answers: freshness per class, per-name overrides from `cache.ttl`."""
    settings = config.cache
    ttls = {
        CacheClass.REFRESH: settings.refresh,
        CacheClass.CONSTANT: settings.ttl_constant,
        CacheClass.STATUS: settings.ttl_status,
        CacheClass.NEVER: 0.0,
    }

    def ttl_for(request: ProxyRequest) -> float:
        return settings.ttl.get(request.name, ttls[request.route.cache])

    up = config.upstream

    def refresh_cap(request: ProxyRequest) -> float:
        # A refresh waits its paced turn, then the command's own timeout at most.
        return up.min_interval + (up.devicelist_timeout if request.route.slow else up.timeout)

    return AnswerCache(
        clock,
        backend.fetch,
        # At night (every inverter asleep, in the latest read) the device read is spaced out.
        DayAndNight(ttl_for, lambda: backend.devices.snapshot, settings.refresh_night),
        max_entries=settings.max_entries,
        max_stale=settings.max_stale,
        idle_after=settings.idle_after,
        backoff_wait=backoff.wait_seconds,
        refresh_cap=refresh_cap,
        client_wait=config.server.client_wait,
    )


def _vars_api(
    config: Config,
    clock: Clock,
    backend: FirmwareBackend,
    device_cache: AnswerCache,
    limiter: RateLimiter | None,
    metrics: Metrics,
) -> VarsService:
    """The 2025 client API, with its own cache of the queries it must ask the PVS.

    What the PVS answers loses the hidden variables before that cache keeps it.
    """
    interval = config.upstream.vars_interval
    clients = config.clients
    hidden = HiddenVars(clients.hidden_vars)
    backend.devices.withhold(hidden.hides)  # not even kept in memory

    async def fetch(request: ProxyRequest) -> Answer:
        pre_login = request.route.name == "vars (pre-login)"
        answer = await backend.translator.vars_query(request.target, session=not pre_login)
        return hidden.answer_without(answer)

    vars_cache = AnswerCache(
        clock,
        fetch,
        lambda _request: interval,
        max_entries=config.cache.max_entries,
        max_stale=max(config.cache.max_stale, interval),
        idle_after=config.cache.idle_after,
        backoff_wait=backend.legacy.upstream.backoff.wait_seconds,
        # "Nothing matched" (400) is an answer too: a client repeating a query that
        # matches nothing must not reach the PVS more often than a good one.
        keeps=lambda answer: answer.ok or answer.status == 400,
        refresh_cap=lambda _request: config.upstream.min_interval + config.upstream.timeout,
        client_wait=config.server.client_wait,
    )
    return VarsService(
        clients,
        config.writes,
        backend=backend,
        devices=backend.devices,
        device_cache=device_cache,
        vars_cache=vars_cache,
        sessions=ClientSessions.from_config(clock, clients),
        hidden=hidden,
        password_configured=bool(config.upstream.password),
        limiter=limiter,
        metrics=metrics,
    )
