"""The test harness: a simulated PVS, bridge configs, bridges on loopback, raw HTTP.

Tests get simulators and bridges from the fixtures in conftest.py (`start_simulator`,
`simulator`, `start_bridge`, `serve_bridge`), which stop everything after the test; the
async context managers here are what those fixtures enter, and what code that cannot use
fixtures (the fuzz test's own event loop) enters itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge import config
from bridge.app import create_app
from bridge.clock import Clock, FakeClock, settle
from bridge.host.tls import self_signed, server_context
from bridge.simulator import server as sim_server
from bridge.simulator.server import Simulator, SimulatorOptions
from bridge.web.keys import CACHE, CONFIG
from bridge.web.runner import make_runner

FIXTURES = Path(__file__).parent / "fixtures"
DEVICE_LIST = "/cgi-bin/dl_cgi?Command=DeviceList"
GET_COMM = "/cgi-bin/dl_cgi?Command=Get_Comm"
UNREACHABLE = "http://127.0.0.1:9"  # discard port on loopback: nothing listens there

Client = TestClient[web.Request, web.Application]
Sections = Mapping[str, Mapping[str, Any]]

# Bridge config presets, given positionally: bridge_config(url, FAULT_TIMING, cache={...}).
FAULT_TIMING: Sections = {
    # The fault tests: 1 s timeouts (then 2 s left alone), a 2 s backoff doubling up to
    # 16 s, the breaker after 3 failures, a 10 s refresh and 60 s of maximum staleness.
    "upstream": {
        "timeout": 1.0,
        "devicelist_timeout": 1.0,
        "after_timeout": 2.0,
        "backoff_initial": 2.0,
        "backoff_max": 16.0,
        "breaker_threshold": 3,
    },
    "cache": {"refresh": 10.0, "max_stale": 60.0},
}
# The firmware tests: the upstream backoff in hundredths of a second.
FAST_BACKOFF: Sections = {"upstream": {"backoff_initial": 0.01, "backoff_max": 0.05}}


def pinned_jitter() -> float:
    """The backoff's jitter pinned to its maximum, so every delay is exact (the default)."""
    return 1.0


# -- the simulated PVS ------------------------------------------------------------------


def tls_context(directory: Path, hostname: str | None = None) -> ssl.SSLContext:
    """A server TLS context with the self-signed pair kept in `directory`."""
    return server_context(*self_signed(directory, hostname))


def pvs_2025(**options: Any) -> dict[str, Any]:
    """Simulator options for the 2025-firmware PVS of the firmware tests (4 inverters)."""
    return {"firmware": "2025", "inverters": 4, **options}


@dataclass
class Sim:
    """A simulated PVS on loopback: its data URL, counters and faults over the side door."""

    simulator: Simulator
    url: str
    session: aiohttp.ClientSession

    @property
    def control(self) -> str:
        """The control URL: plain HTTP on a side port that stays open while `down`."""
        return self.simulator.control_url

    async def stats(self) -> dict[str, Any]:
        """GET /_sim/stats, as any client would."""
        async with self.session.get(f"{self.control}/_sim/stats") as response:
            return sim_server.stats_from(await response.read())

    async def count(self, name: str = "DeviceList") -> int:
        """How many requests for one command or path reached the simulated PVS."""
        return int((await self.stats())["requests"].get(name, 0))

    async def fault(self, mode: str, **params: Any) -> dict[str, Any]:
        """Switch the fault mode (POST /_sim/faults); the new state."""
        async with self.session.post(
            f"{self.control}/_sim/faults", json={"mode": mode, **params}
        ) as response:
            document: dict[str, Any] = await response.json()
            assert response.status == 200, document
            return document

    async def faults(self) -> dict[str, Any]:
        """GET /_sim/faults: mode, injected faults, overloads, reboots."""
        async with self.session.get(f"{self.control}/_sim/faults") as response:
            document: dict[str, Any] = await response.json()
            return document


@contextlib.asynccontextmanager
async def running_simulator(
    clock: Clock | None = None,
    *,
    tls_dir: Path | None = None,
    feed: bool = False,
    **options: Any,
) -> AsyncIterator[Sim]:
    """A simulator (no latency unless asked; HTTPS with `tls_dir`; its WebSocket live feed
    on a port of its own with `feed`: `sim.simulator.feed_url`), stopped afterwards."""
    options.setdefault("latency", 0.0)
    simulator = sim_server.build(SimulatorOptions(**options), clock)
    context = tls_context(tls_dir, "pvs") if tls_dir is not None else None
    ws_host, ws_port = ("127.0.0.1", 0) if feed else (None, None)
    runner, url = await sim_server.start(simulator, "127.0.0.1", 0, context, ws_host, ws_port)
    try:
        async with aiohttp.ClientSession() as session:
            yield Sim(simulator, url, session)
    finally:
        await runner.cleanup()


# -- the bridge -------------------------------------------------------------------------


def bridge_config(
    upstream_url: str, /, *presets: Sections, **sections: Mapping[str, Any]
) -> config.Config:
    """A test config: rate limit, warm start and log summaries off, no pacing (min_interval
    0), no upstream live feed (ws_url off); then each preset, then the keyword sections,
    merged key by key."""
    overrides: dict[str, dict[str, Any]] = {
        # Never bound; and no state_dir to write to unless a test gives one (on a Pi the
        # default /var/lib/pvs-bridge exists, and holds the real bridge's files).
        "server": {
            "listen": ["127.0.0.1:8080"],
            "summary_interval": 0.0,
            "state_dir": "/nonexistent/pvs-bridge-tests",
        },
        "upstream": {"url": upstream_url, "min_interval": 0.0, "ws_url": "off"},
        "cache": {"warm_start": False},
        "rate_limit": {"enabled": False},
    }
    for layer in (*presets, sections):
        for section, values in layer.items():
            overrides.setdefault(section, {}).update(values)
    return config.load(None, environ={}, overrides=overrides)


def bridge_app(
    upstream_url: str,
    /,
    *presets: Sections,
    clock: Clock | None = None,
    jitter: Callable[[], float] = pinned_jitter,
    **sections: Mapping[str, Any],
) -> web.Application:
    """A bridge application for `bridge_config(upstream_url, *presets, **sections)`."""
    cfg = bridge_config(upstream_url, *presets, **sections)
    return create_app(cfg, clock=clock, jitter=jitter)


@contextlib.asynccontextmanager
async def bridge_client(app: web.Application) -> AsyncIterator[Client]:
    """The bridge on a free loopback port, with a TestClient for it."""
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@dataclass
class Served:
    """A bridge served as `pvs-bridge serve` serves it (its production runner) on loopback."""

    app: web.Application
    runner: web.AppRunner
    url: str
    port: int
    closed: bool = False

    async def close(self) -> None:
        """Stop it, as a SIGTERM would (idempotent)."""
        if not self.closed:
            self.closed = True
            await self.runner.cleanup()


@contextlib.asynccontextmanager
async def served_bridge(
    app: web.Application, *, tls_dir: Path | None = None
) -> AsyncIterator[Served]:
    """The production runner (hardened parser, JSON parser errors) on a free loopback port,
    over HTTPS with the self-signed pair kept in `tls_dir` when one is given."""
    runner = make_runner(app, app[CONFIG].server)
    await runner.setup()
    context = tls_context(tls_dir) if tls_dir is not None else None
    served: Served | None = None
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        port = int(runner.addresses[0][1])
        scheme = "https" if context is not None else "http"
        served = Served(app, runner, f"{scheme}://127.0.0.1:{port}", port)
        yield served
    finally:
        if served is not None:
            await served.close()
        else:
            await runner.cleanup()


SimulatorFactory = Callable[..., Awaitable[Sim]]
BridgeFactory = Callable[..., Awaitable[Client]]
ServeFactory = Callable[..., Awaitable[Served]]


# -- waiting and moving time ------------------------------------------------------------


class HasApp(Protocol):
    """A TestClient or a Served bridge."""

    @property
    def app(self) -> web.Application: ...


async def idle(bridge: HasApp, limit: float = 10.0) -> None:
    """Wait (bounded, real time) until the bridge has no upstream fetch in flight, then let
    whatever that fetch woke run."""
    cache = bridge.app[CACHE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while cache.fetching and loop.time() < deadline:  # noqa: ASYNC110 - bounded poll of state
        await asyncio.sleep(0.005)
    await settle()


async def advance(
    clock: FakeClock, bridge: HasApp, seconds: float, *, step: float | None = None
) -> None:
    """Move fake time (in steps of `step` when given), letting the upstream fetches that
    starts finish after each move."""
    steps = int(seconds // step) if step else 0
    for _ in range(steps):
        await clock.advance(step or 0.0)
        await idle(bridge)
    await clock.advance(seconds - steps * (step or 0.0))
    await idle(bridge)


async def health(bridge: Client) -> tuple[int, dict[str, Any]]:
    """(HTTP status, /health document)."""
    response = await bridge.get("/health")
    document: dict[str, Any] = await response.json()
    return response.status, document


# -- raw HTTP ---------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on now (for a process that binds it itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RawAnswer:
    """An HTTP answer read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def parse_raw(data: bytes) -> RawAnswer | None:
    """Parse the first HTTP answer in `data` (None if there is none)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return RawAnswer(status, headers, rest[:length])


async def raw_request(port: int, data: bytes, limit: float = 5.0) -> RawAnswer | None:
    """Send raw bytes to 127.0.0.1:port and read the answer (the bridge closes after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            answer = parse_raw(received)
            if answer is not None and len(answer.body) == int(
                answer.headers.get("content-length", -1)
            ):
                return answer
        return parse_raw(received)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def until(
    check: Callable[[], bool | Awaitable[bool]], *, tries: int = 500, pause: float = 0.01
) -> None:
    """Poll a state until it holds (bounded: `tries` looks, `pause` apart); fail if never."""
    for _ in range(tries):
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return
        await asyncio.sleep(pause)
    raise AssertionError("condition never held")


# What a `pvs-bridge serve` process in a test leaves out: the summary line, the live feed
# on both sides, the rate limit; a short shutdown grace.
SERVE_ENV = {
    "PVS_BRIDGE_SERVER_SUMMARY_INTERVAL": "0",
    "PVS_BRIDGE_SERVER_LISTEN_WS": "",
    "PVS_BRIDGE_UPSTREAM_WS_URL": "off",
    "PVS_BRIDGE_SERVER_SHUTDOWN_GRACE": "3",
    "PVS_BRIDGE_RATE_LIMIT_ENABLED": "false",
}


async def serve_process(
    upstream: str,
    state_dir: Path,
    port: int,
    *flags: str,
    env: Mapping[str, str] | None = None,
    stderr: int = asyncio.subprocess.DEVNULL,
    preexec_fn: Callable[[], None] | None = None,
) -> asyncio.subprocess.Process:
    """`pvs-bridge serve` as a real process, as systemd runs it (`env` on top of SERVE_ENV)."""
    environment = {
        **os.environ,
        **SERVE_ENV,
        "PVS_BRIDGE_SERVER_STATE_DIR": str(state_dir),
        **(env or {}),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", "--listen", f"127.0.0.1:{port}",
        "--upstream", upstream, *flags, env=environment,
        stdout=asyncio.subprocess.DEVNULL, stderr=stderr, preexec_fn=preexec_fn,
    )  # fmt: skip


async def health_when_serving(process: asyncio.subprocess.Process, url: str) -> dict[str, Any]:
    """/health of the process once it answers (bounded: 100 tries); fails if it exited."""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            assert process.returncode is None, f"the bridge exited with {process.returncode}"
            try:
                async with session.get(f"{url}/health") as response:
                    document: dict[str, Any] = await response.json()
                    return document
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise AssertionError("the bridge never started serving")
