"""Fixtures: simulated PVSes on loopback and bridges in front of them, stopped after the test.

The helpers they use (and that tests use) are in tests/support.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import Clock
from tests.support import (
    DEVICE_LIST,
    BridgeFactory,
    Client,
    Sections,
    Served,
    ServeFactory,
    Sim,
    SimulatorFactory,
    bridge_app,
    bridge_client,
    pinned_jitter,
    running_simulator,
    served_bridge,
)

# Names some test modules still import from here; new code imports tests.support.
__all__ = ["DEVICE_LIST", "BridgeFactory", "ServeFactory", "SimulatorFactory"]


@pytest.fixture
async def start_simulator() -> AsyncIterator[SimulatorFactory]:
    """Start simulators on free loopback ports: `await start_simulator(clock, **options)`
    (no latency unless asked; `tls_dir=` serves HTTPS). All stop after the test."""
    async with contextlib.AsyncExitStack() as running:

        async def start(clock: Clock | None = None, **options: Any) -> Sim:
            return await running.enter_async_context(running_simulator(clock, **options))

        yield start


@pytest.fixture
async def simulator(start_simulator: SimulatorFactory) -> Sim:
    """One simulator with no latency."""
    return await start_simulator()


# Both bridge fixtures depend on start_simulator so that bridges stop before the
# simulators they talk to (a bridge logs out of the PVS when it stops).


@pytest.fixture
async def start_bridge(start_simulator: SimulatorFactory) -> AsyncIterator[BridgeFactory]:
    """Start a bridge in front of an upstream URL, with a TestClient on loopback:
    `await start_bridge(url, *presets, clock=..., jitter=..., cache={...}, ...)`."""
    async with contextlib.AsyncExitStack() as running:

        async def start(
            upstream_url: str,
            /,
            *presets: Sections,
            clock: Clock | None = None,
            jitter: Callable[[], float] = pinned_jitter,
            **sections: Mapping[str, Any],
        ) -> Client:
            app = bridge_app(upstream_url, *presets, clock=clock, jitter=jitter, **sections)
            return await running.enter_async_context(bridge_client(app))

        yield start


@pytest.fixture
async def serve_bridge(start_simulator: SimulatorFactory) -> AsyncIterator[ServeFactory]:
    """Serve a bridge through its production runner on loopback (HTTPS with `tls_dir=`):
    `await serve_bridge(url, *presets, clock=..., tls_dir=..., cache={...}, ...)`."""
    async with contextlib.AsyncExitStack() as running:

        async def start(
            upstream_url: str,
            /,
            *presets: Sections,
            clock: Clock | None = None,
            jitter: Callable[[], float] = pinned_jitter,
            tls_dir: Path | None = None,
            **sections: Mapping[str, Any],
        ) -> Served:
            app = bridge_app(upstream_url, *presets, clock=clock, jitter=jitter, **sections)
            return await running.enter_async_context(served_bridge(app, tls_dir=tls_dir))

        yield start
