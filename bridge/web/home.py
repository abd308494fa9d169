"""GET / (the home page; HEAD /, which some integrations send before each poll as a health
probe) and GET /site.json (the page's data).

The page is one self-contained document (`home_page`: no external URL, a Pi may have no
internet) carrying its first data; its script then reads `/site.json` and follows the
`/live` event stream. `/site.json` is built from what the bridge holds (`home_data`).
Reading it is interest in the device list (`AnswerCache.keep_fresh`), as a client's read
is: while a page is open the refresh-ahead keeps the data fresh, once per `cache.refresh`
whoever asks. Only when the bridge holds no device list at all does it ask for the one
shared read (single flight, never while the backoff holds), and answers at once without
waiting for it.
"""

from __future__ import annotations

import json

from aiohttp import web

from bridge.cache.answers import AnswerCache
from bridge.cache.history import History
from bridge.pvs.devices import DeviceReader
from bridge.pvs.requests import DEVICE_LIST
from bridge.web.health import HealthReporter
from bridge.web.home_data import Inputs, site_document
from bridge.web.home_page import page
from bridge.web.live import LiveHub

PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


class HomePage:
    """The home page and its data."""

    def __init__(
        self,
        health: HealthReporter,
        cache: AnswerCache,
        devices: DeviceReader,
        history: History,
        hub: LiveHub,
    ) -> None:
        self.health = health
        self.cache = cache
        self.devices = devices
        self.history = history
        self.hub = hub

    async def handle(self, request: web.Request) -> web.Response:
        """GET / and HEAD /: the page (200 whatever the PVS does: a probe sees the bridge).
        Its first document is what the bridge holds; it is no read of the device list (a
        monitor's GET / costs the PVS nothing), the script's first `/site.json` is."""
        data = b"" if request.method == "HEAD" else json.dumps(self.document(False)).encode()
        return web.Response(
            body=page(data), content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
        )

    async def site(self, _request: web.Request) -> web.Response:
        """GET /site.json."""
        return web.json_response(self.document(), headers={"Cache-Control": "no-store"})

    def document(self, keep_fresh: bool = True) -> dict[str, object]:
        """The page's data now (see `home_data`); with `keep_fresh`, a client read."""
        if keep_fresh:
            self._keep_fresh()
        _status, health = self.health.report()
        inputs = Inputs(
            now=self.cache.clock.wall(),
            snapshot=self.devices.snapshot,
            live=self.hub.state,
            live_source=self.hub.source,
            history=self.history,
            health=health,
        )
        return site_document(inputs)

    def _keep_fresh(self) -> None:
        """Interest in the device list (as a client's read); the shared read when none is
        held at all."""
        self.cache.keep_fresh(DEVICE_LIST, read_if_missing=True)
