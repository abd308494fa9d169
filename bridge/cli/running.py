"""Running the bridge: logging, the event loop, listeners, and the wait for a signal.

The only place that runs the application (`create_app` builds it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from bridge import __version__, config
from bridge.app import create_app
from bridge.config import Config
from bridge.web.runner import make_runner

log = logging.getLogger("bridge")


def setup_logging(level: str) -> None:
    """Log to stderr; journald adds its own timestamps, so omit ours under systemd."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


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
    runner = make_runner(app, cfg.server)
    await runner.setup()
    urls: list[str] = []
    try:
        for item in cfg.server.listen:
            host, port = config.parse_hostport(item, "server.listen")
            site = web.TCPSite(runner, host, port, reuse_address=True)
            try:
                await site.start()
            except OSError as error:
                log.error("cannot listen on %s: %s", item, error.strerror or error)
                return 1
            urls.append(f"http://{item}")
        if cfg.server.listen_tls:
            from bridge.host.tls import context_from_config

            context = context_from_config(cfg.server)
            for item in cfg.server.listen_tls:
                host, port = config.parse_hostport(item, "server.listen_tls")
                site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=context)
                try:
                    await site.start()
                except OSError as error:
                    log.error("cannot listen on %s: %s", item, error.strerror or error)
                    return 1
                urls.append(f"https://{item}")
        log.info(
            "pvs-bridge %s serving %s for PVS %s", __version__, ", ".join(urls), cfg.upstream.url
        )
        if ready is not None:
            ready(urls)
        await wait_for_signal()
        log.info("shutting down")
    finally:
        await runner.cleanup()
    return 0


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
