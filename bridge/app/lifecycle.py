"""What runs beside the requests, started and stopped with the application: the upstream
client session, the warm store, the minute history's store, the start-up warm-up and the
log summaries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from bridge.app.live import Live
from bridge.cache import warmstore
from bridge.cache.history_store import kept_history
from bridge.pvs.answer import Answer
from bridge.pvs.requests import DEVICE_LIST
from bridge.web import keys

log = logging.getLogger(__name__)

LOGOUT_GRACE = 5.0  # seconds a stopping bridge gives its PVS logout


async def upstream_session(app: web.Application) -> AsyncIterator[None]:
    await app[keys.UPSTREAM].start()
    yield
    await app[keys.CACHE].close()
    await app[keys.VARS_CACHE].close()
    # Log out of the PVS (it is reported to leak sessions), but never hold up a stop for
    # it: the logout waits its paced turn like any request, and the PVS may be hanging.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LOGOUT_GRACE):
            await app[keys.BACKEND].close()
    await app[keys.UPSTREAM].close()


async def warm_store(app: web.Application) -> AsyncIterator[None]:
    """The last good DeviceList survives a restart (see cache.warmstore). First, whether
    server.state_dir takes writes at all (for /health: never fatal)."""
    config, upstream, devices = app[keys.CONFIG], app[keys.UPSTREAM], app[keys.DEVICES]
    state = app[keys.STATE_DIR]
    state.probe()
    if not config.cache.warm_start:
        yield
        return

    def loaded(answer: Answer) -> None:
        upstream.record.remember_success(answer.fetched_wall)
        devices.adopt(answer)

    state_dir = Path(config.server.state_dir)
    async with warmstore.kept_warm(
        state_dir, app[keys.CACHE], app[keys.CLOCK], upstream.base_url, loaded, state.write
    ):
        yield


def history(live: Live) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context in which the minute history of `live` survives a restart
    (loaded at start, saved every 15 min and at stop: see cache.history_store)."""

    async def kept(app: web.Application) -> AsyncIterator[None]:
        state_dir = Path(app[keys.CONFIG].server.state_dir)
        async with kept_history(
            live.history, state_dir, app[keys.CLOCK], app[keys.STATE_DIR].write
        ):
            yield

    return kept


async def live_feed(app: web.Application) -> AsyncIterator[None]:
    """The one upstream WebSocket feed, for as long as the bridge runs."""
    feed = app[keys.FEED]
    task = asyncio.create_task(feed.run(), name="upstream feed")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await feed.close()


async def background(app: web.Application) -> AsyncIterator[None]:
    """Warm the device list at start and log a one-line summary per interval."""
    config = app[keys.CONFIG]
    tasks: list[asyncio.Task[None]] = []
    # Not when the stored DeviceList is still fresh: a service restarted (or restarting in
    # a loop) must not cost the PVS a DeviceList each time.
    if config.cache.warm_start and not app[keys.CACHE].holds_fresh(DEVICE_LIST):
        tasks.append(asyncio.create_task(app[keys.CACHE].prefetch(DEVICE_LIST), name="warm start"))
    interval = config.server.summary_interval
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
        await app[keys.CLOCK].sleep(interval)
        line = app[keys.METRICS].summary_since_last()
        if line:
            calls = sum(app[keys.UPSTREAM].stats.calls.values())
            log.info("%s; upstream calls so far %d", line, calls)


MQTT_STOP_GRACE = 5.0  # seconds a stopping bridge gives its MQTT `offline` and disconnect


def mqtt(live: Live) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context of the MQTT publisher's task (with mqtt.url). Started last, so
    stopped first: `offline` is published and the connection closed cleanly."""

    async def publishing(app: web.Application) -> AsyncIterator[None]:
        publisher, cache = live.mqtt, app[keys.CACHE]
        if publisher is None:
            yield
            return

        async def keep_fresh() -> None:
            # Interest in the data (refresh-ahead keeps going, no HIT counted); the one
            # shared read only when nothing is held (no warm start, or it failed).
            cache.keep_fresh(DEVICE_LIST, read_if_missing=True)

        task = asyncio.create_task(publisher.run(keep_fresh), name="mqtt")
        yield
        publisher.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, MQTT_STOP_GRACE)

    return publishing
