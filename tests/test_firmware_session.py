"""Done-when 3 in real time: a short upstream session, steady polling, few logins, no errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from bridge.app import create_app
from tests.firmware_support import bridge_config, running_simulator, serving, sim_stats

TTL = 1.0
POLLING = 6.0  # seconds of polling; the measurement over a minute is in docs/firmware-2025.md


async def test_short_sessions_renewed_once_per_lifetime(tmp_path: Path) -> None:
    async with running_simulator(session_ttl=TTL, latency=0.0) as (_sim, url):
        cfg = bridge_config(
            url,
            tmp_path,
            upstream={"vars_interval": 0.2},
            cache={"refresh": 0.3, "max_stale": 5.0},
            clients={"trusted_lan": True},
        )
        async with (
            serving(create_app(cfg)) as base,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
        ):
            await session.get(f"{base}/auth?login")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + POLLING
            statuses: list[int] = []
            while loop.time() < deadline and len(statuses) < 2000:
                for target in ("/cgi-bin/dl_cgi?Command=DeviceList", "/vars?match=livedata"):
                    async with session.get(base + target) as answer:
                        await answer.read()
                        statuses.append(answer.status)
                await asyncio.sleep(0.05)
            stats: dict[str, Any] = await sim_stats(url)
    assert statuses and set(statuses) == {200}
    logins = stats["logins"]
    assert 2 <= logins <= POLLING / TTL + 2, stats
    assert stats["login_failures"] == 0
    assert logins < len(statuses) / 10  # far fewer than one per request
