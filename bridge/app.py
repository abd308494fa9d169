"""The application factory: wires config into policy, limiter, cache, backend and routes."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import aiohttp_cors
from aiohttp import web

from bridge import hardening, interfaces, varserver, warmstore
from bridge.backend import Backend
from bridge.breaker import Breaker
from bridge.cache import AnswerCache
from bridge.clock import Clock
from bridge.config import Config
from bridge.firmware import FirmwareBackend, firmware_backend
from bridge.health import HealthReporter
from bridge.metrics import Metrics, render
from bridge.policy import CacheClass, Policy, ProxyRequest
from bridge.proxy import Proxy
from bridge.ratelimit import RateLimiter
from bridge.upstream import Upstream

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
UPSTREAM = web.AppKey("upstream", Upstream)
CACHE = web.AppKey("cache", AnswerCache)
BACKEND = web.AppKey("backend", Backend)
HEALTH = web.AppKey("health", HealthReporter)
METRICS = web.AppKey("metrics", Metrics)
PROXY = web.AppKey("proxy", Proxy)

CORS_EXPOSED = ("Age", "X-Cache", "Cache-Control", "Warning", "Retry-After")


def resolve_upstream_url(config: Config) -> str:
    """The configured upstream, with `auto` resolved to the PVS-side interface's gateway."""
    url = config.upstream_url
    if url != "auto":
        return url
    found = interfaces.find_pvs(config["upstream"]["interface"])
    if found is None:
        log.warning("upstream = auto: no interface on 172.27.0.0/16; using http://172.27.153.1")
        return "http://172.27.153.1"
    name, address = found
    log.info("upstream = auto: PVS at %s via %s", address, name)
    return f"http://{address}"


def ttl_policy(config: Config) -> dict[CacheClass, float]:
    """Freshness per cache class; per-name overrides come from `cache.ttl`."""
    cache = config["cache"]
    return {
        CacheClass.REFRESH: cache["refresh"],
        CacheClass.CONSTANT: cache["ttl_constant"],
        CacheClass.STATUS: cache["ttl_status"],
        CacheClass.NEVER: 0.0,
    }


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    backend: Backend | None = None,
) -> web.Application:
    """Build the bridge application from a validated config."""
    clock = clock or Clock()
    up, cache_cfg, rate = config["upstream"], config["cache"], config["rate_limit"]
    app = web.Application(client_max_size=config["server"]["max_request_bytes"])
    hardening.install(app, config)
    breaker = Breaker(
        clock,
        initial=up["backoff_initial"],
        maximum=up["backoff_max"],
        threshold=up["breaker_threshold"],
    )
    upstream = Upstream(
        resolve_upstream_url(config),
        clock,
        breaker,
        connect_timeout=up["connect_timeout"],
        queue_limit=up["queue_limit"],
        verify_tls=up["verify_tls"],
        tls_fingerprint=up["tls_fingerprint"],
    )
    backend = backend or firmware_backend(config, upstream, clock)
    ttls = ttl_policy(config)
    overrides: dict[str, float] = cache_cfg["ttl"]

    def ttl_for(request: ProxyRequest) -> float:
        return overrides.get(request.name, ttls[request.route.cache])

    cache = AnswerCache(
        clock,
        backend.fetch,
        ttl_for,
        max_entries=cache_cfg["max_entries"],
        max_stale=cache_cfg["max_stale"],
        idle_after=cache_cfg["idle_after"],
    )
    cache.follow_backoff(breaker.wait_seconds)
    limiter = (
        RateLimiter(clock, rate=rate["rate"], burst=rate["burst"], max_clients=rate["max_clients"])
        if rate["enabled"]
        else None
    )
    metrics = Metrics()
    upstream_host = urlsplit(upstream.base_url).hostname
    health = HealthReporter(
        clock,
        upstream,
        cache,
        backend,
        limiter,
        lambda: interfaces.describe(up["interface"], upstream_host),
    )
    proxy = Proxy(Policy(config), cache, backend, limiter, metrics)
    app[CONFIG], app[CLOCK], app[UPSTREAM], app[CACHE] = config, clock, upstream, cache
    app[BACKEND], app[HEALTH], app[METRICS], app[PROXY] = backend, health, metrics, proxy

    app.cleanup_ctx.append(_upstream_session)
    app.cleanup_ctx.append(
        warmstore.context(
            config,
            cache,
            clock,
            upstream.base_url,
            loaded=lambda answer: breaker.remember_success(answer.fetched_wall),
        )
    )
    app.cleanup_ctx.append(_background)
    _add_routes(app, proxy, config["cors"]["origins"])
    if isinstance(backend, FirmwareBackend):  # the 2025 API for new-firmware clients
        varserver.setup(app, varserver.VarsService(config, clock, backend, limiter, metrics))
    hardening.seal(app)  # last: every route guarded, the rest refused in JSON
    return app


def _add_routes(app: web.Application, proxy: Proxy, origins: list[str]) -> None:
    cors = aiohttp_cors.setup(
        app,
        defaults={
            origin: aiohttp_cors.ResourceOptions(
                allow_credentials=False,
                expose_headers=CORS_EXPOSED,
                allow_headers=("Authorization", "Content-Type"),
                allow_methods=["GET", "HEAD"],
                max_age=3600,
            )
            for origin in origins
        },
    )
    readable = [
        app.router.add_get("/cgi-bin/dl_cgi", proxy.handle),
        app.router.add_get("/cgi-bin/dl_cgi/{tail:.+}", proxy.handle),
        app.router.add_get("/health", health_handler),
        app.router.add_get("/metrics", metrics_handler),
    ]
    app.router.add_get("/", index_handler)
    hardening.answer_at_once(app, proxy.handle, proxy.at_once, proxy.the_long_way)
    for route in readable:
        cors.add(route)


async def _upstream_session(app: web.Application) -> AsyncIterator[None]:
    await app[UPSTREAM].start()
    yield
    await app[CACHE].close()
    await app[BACKEND].close()  # e.g. log out of the PVS: it is reported to leak sessions
    await app[UPSTREAM].close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Warm the DeviceList at start and log a one-line summary per interval."""
    config = app[CONFIG]
    tasks: list[asyncio.Task[None]] = []
    warm = warmstore.DEVICE_LIST
    # Not when the stored DeviceList is still fresh: a service restarted (or restarting in
    # a loop) must not cost the PVS a DeviceList each time.
    if config["cache"]["warm_start"] and not app[CACHE].holds_fresh(warm):
        tasks.append(asyncio.create_task(app[CACHE].prefetch(warm), name="warm start"))
    interval = config["server"]["summary_interval"]
    if interval > 0:
        tasks.append(asyncio.create_task(_summaries(app, interval), name="summaries"))
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _summaries(app: web.Application, interval: float) -> None:
    while True:
        await app[CLOCK].sleep(interval)
        line = app[METRICS].summary_since_last()
        if line:
            upstream = app[UPSTREAM].stats
            log.info("%s; upstream calls so far %d", line, sum(upstream.calls.values()))


async def health_handler(request: web.Request) -> web.Response:
    """GET /health."""
    status, document = request.app[HEALTH].report()
    return web.json_response(
        document, status=status, dumps=lambda value: json.dumps(value, indent=1) + "\n"
    )


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics in the Prometheus text format."""
    app = request.app
    upstream, cache, metrics = app[UPSTREAM], app[CACHE], app[METRICS]
    status, _document = app[HEALTH].report()
    families: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]] = [
        (
            "pvs_bridge_responses_total",
            "counter",
            "Answers to dl_cgi requests by HTTP status and X-Cache.",
            [
                ({"status": str(code), "cache": state}, float(count))
                for (code, state), count in sorted(metrics.responses.items())
            ],
        ),
        (
            "pvs_bridge_upstream_requests_total",
            "counter",
            "Requests sent to the PVS by command or path.",
            [
                ({"name": name}, float(count))
                for name, count in sorted(upstream.stats.calls.items())
            ],
        ),
        (
            "pvs_bridge_upstream_failures_total",
            "counter",
            "Failed PVS requests by kind.",
            [({"kind": k}, float(v)) for k, v in sorted(upstream.stats.failures.items())],
        ),
        (
            "pvs_bridge_upstream_consecutive_failures",
            "gauge",
            "Failed PVS attempts in a row.",
            [({}, float(upstream.breaker.consecutive_failures))],
        ),
        (
            "pvs_bridge_cache_age_seconds",
            "gauge",
            "Age of each cached answer.",
            [({"key": str(row["key"])}, float(str(row["age_s"]))) for row in cache.snapshot()],
        ),
        (
            "pvs_bridge_up",
            "gauge",
            "1 unless /health says down.",
            [({}, 0.0 if status == 503 else 1.0)],
        ),
    ]
    return web.Response(text=render(families), content_type="text/plain", charset="utf-8")


async def index_handler(request: web.Request) -> web.Response:
    """GET / (and HEAD /, which some integrations send before each poll)."""
    _status, document = request.app[HEALTH].report()
    upstream = cast(dict[str, object], document["upstream"])
    rows = "".join(
        f"<tr><td><a href='{html.escape(str(row['key']))}'>{html.escape(str(row['name']))}</a></td>"
        f"<td>{row['age_s']} s</td><td>{row['state']}</td></tr>"
        for row in request.app[CACHE].snapshot()
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pvs-bridge</title></head>
<body><h1>pvs-bridge</h1>
<p>Status: <b>{html.escape(str(document["status"]))}</b> &middot; PVS
{html.escape(str(upstream["url"]))} &middot; <a href="/health">/health</a>
&middot; <a href="/metrics">/metrics</a></p>
<p>Try <a href="/cgi-bin/dl_cgi?Command=DeviceList">DeviceList</a>,
<a href="/cgi-bin/dl_cgi/supervisor/info">supervisor/info</a>.</p>
<table border="1" cellpadding="4"><tr><th>cached</th><th>age</th><th>state</th></tr>{rows}</table>
</body></html>
"""
    return web.Response(text=page, content_type="text/html")
