"""Shared helpers for the 2025-firmware tests: a simulator on loopback and a bridge config."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge import config
from bridge.app import create_app
from bridge.clock import Clock
from bridge.host.tls import self_signed, server_context
from bridge.simulator import server
from bridge.simulator.server import Simulator, SimulatorOptions


@asynccontextmanager
async def running_simulator(
    clock: Clock | None = None,
    *,
    tls_dir: Path | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Simulator, str]]:
    """A simulated PVS (2025 firmware unless told otherwise) on a free loopback port."""
    settings: dict[str, Any] = {"inverters": 4, "latency": 0.0, "firmware": "2025"}
    settings.update(options)
    simulator = server.build(SimulatorOptions(**settings), clock)
    context = server_context(*self_signed(tls_dir, "pvs")) if tls_dir is not None else None
    runner, url = await server.start(simulator, "127.0.0.1", 0, context)
    try:
        yield simulator, url
    finally:
        await runner.cleanup()


def bridge_config(upstream_url: str, state_dir: Path, **sections: dict[str, Any]) -> config.Config:
    """A bridge config for tests: no rate limit, no warm start, no summaries."""
    overrides: dict[str, dict[str, Any]] = {
        "server": {
            "listen": ["127.0.0.1:8080"],
            "state_dir": str(state_dir),
            "summary_interval": 0,
        },
        "upstream": {
            "url": upstream_url,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "min_interval": 0.0,
        },
        "cache": {"warm_start": False},
        "rate_limit": {"enabled": False},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return config.load(None, environ={}, overrides=overrides)


async def bridge_for(
    aiohttp_client: Any,
    url: str,
    state_dir: Path,
    *,
    clock: Clock | None = None,
    **sections: dict[str, Any],
) -> TestClient[web.Request, web.Application]:
    """A bridge (a real server on loopback) in front of the simulator at `url`."""
    app = create_app(bridge_config(url, state_dir, **sections), clock=clock)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    return client


async def sim_stats(url: str) -> dict[str, Any]:
    """The simulator's `/_sim/stats` document."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/_sim/stats", ssl=False) as answer,
    ):
        document: dict[str, Any] = json.loads(await answer.read())
        return document


async def set_fault(url: str, mode: str) -> None:
    """Switch the simulator's fault mode (POST /_sim/faults)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/_sim/faults", json={"mode": mode}, ssl=False) as answer,
    ):
        assert answer.status == 200, await answer.text()


@asynccontextmanager
async def serving(app: web.Application, ssl_dir: Path | None = None) -> AsyncIterator[str]:
    """Serve a bridge app on loopback (with TLS when `ssl_dir` holds the cert); its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = server_context(*self_signed(ssl_dir)) if ssl_dir is not None else None
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    port = sockets[0].getsockname()[1]
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
