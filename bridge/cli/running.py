"""Running the bridge: logging, the event loop, listeners, and the wait for a signal.

The only place that runs the application (`create_app` builds it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from bridge import __version__, config
from bridge.app import create_app
from bridge.config import Config
from bridge.host import logs
from bridge.host.fds import raise_open_files_limit
from bridge.host.systemd import Notifier
from bridge.web import keys
from bridge.web.connections import RESERVED_FDS
from bridge.web.runner import make_runner

log = logging.getLogger("bridge")


def setup_logging(level: str, burst: int = 20) -> None:
    """Log to stderr, with journald priorities under systemd, at most `burst` lines of a
    kind a minute (see host.logs)."""
    logs.setup(level, burst)


def run_async(main_coroutine: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (faster on a Pi), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_coroutine)
    result: int = uvloop.run(main_coroutine)
    return result


async def serve(cfg: Config, ready: Callable[[list[str]], None] | None = None) -> int:
    """Run the bridge until SIGTERM/SIGINT, then shut down within the grace period."""
    app = create_app(cfg)
    raise_open_files_limit(cfg.server.max_connections + RESERVED_FDS)
    runner = make_runner(app, cfg.server)
    await runner.setup()
    # The live feed has a listener of its own (port 9002, as on the PVS), where "/" is
    # the WebSocket; it shares the bridge's hub and guards, and the connection caps.
    feed_runner = make_runner(app[keys.FEED_APP], cfg.server, runner.connections)
    await feed_runner.setup()
    systemd = Notifier()
    try:
        urls = await _listen(runner, cfg.server.listen, "http", "server.listen")
        # No certificate to be had (read-only state_dir, a pair that does not load) turns
        # the TLS listener off, named in /health; plain HTTP serves all the same.
        tls = app[keys.TLS]
        context = tls.context(cfg.server, app[keys.STATE_DIR]) if tls.wanted else None
        if context is not None:
            urls += await _listen(
                runner, cfg.server.listen_tls, "https", "server.listen_tls", context
            )
            tls.listening = True
        urls += await _listen(feed_runner, cfg.server.listen_ws, "ws", "server.listen_ws")
        log.info(
            "pvs-bridge %s serving %s for PVS %s", __version__, ", ".join(urls), cfg.upstream.url
        )
        if ready is not None:
            ready(urls)
        systemd.notify("READY=1", f"STATUS=serving {', '.join(urls)}")
        async with systemd.watchdog_pings(health_line(app)):
            await wait_for_signal()
        systemd.notify("STOPPING=1", "STATUS=shutting down")
        log.info("shutting down")
    except ListenError:
        return 1
    finally:
        await feed_runner.cleanup()
        await runner.cleanup()
    return 0


def health_line(app: web.Application) -> Callable[[], str]:
    """The PVS's health in one line, for `systemctl status` ("PVS degraded: ...")."""

    def line() -> str:
        status, reasons = app[keys.HEALTH].verdict()
        return f"PVS {status}" + (f": {reasons[0]}" if reasons else "")

    return line


class ListenError(Exception):
    """An address could not be listened on (already logged)."""


async def _listen(
    runner: web.AppRunner,
    items: tuple[str, ...],
    scheme: str,
    key: str,
    context: ssl.SSLContext | None = None,
) -> list[str]:
    """Start a site per address; the URLs served."""
    urls: list[str] = []
    for item in items:
        host, port = config.parse_hostport(item, key)
        site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=context)
        try:
            await site.start()
        except OSError as error:
            log.error("cannot listen on %s: %s", item, error.strerror or error)
            raise ListenError(item) from None
        urls.append(f"{scheme}://{item}")
    return urls


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
