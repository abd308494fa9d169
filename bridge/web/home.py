"""GET / (and HEAD /, which some integrations send before each poll as a health probe)."""

from __future__ import annotations

import html
from typing import cast

from aiohttp import web

from bridge.cache.answers import AnswerCache
from bridge.web.health import HealthReporter


class HomePage:
    """A plain page: the bridge's status and what it holds."""

    def __init__(self, health: HealthReporter, cache: AnswerCache) -> None:
        self.health = health
        self.cache = cache

    async def handle(self, _request: web.Request) -> web.Response:
        """The page, built from /health's document."""
        _status, document = self.health.report()
        upstream = cast(dict[str, object], document["upstream"])
        rows = "".join(
            f"<tr><td><a href='{html.escape(str(row['key']))}'>"
            f"{html.escape(str(row['name']))}</a></td>"
            f"<td>{row['age_s']} s</td><td>{row['state']}</td></tr>"
            for row in self.cache.snapshot()
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
