"""Done-when 3: a short upstream session, steady polling, few logins, no errors.

The PVS and the bridge share a FakeClock moved in steps, so the session's lifetime and the
polling are counted in fake seconds; the measurement over a real minute is in
docs/firmware-2025.md.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bridge.clock import FakeClock
from tests.support import FAST_BACKOFF, ServeFactory, SimulatorFactory, idle, pvs_2025

TTL = 1.0
STEP = 0.05  # a client polls both targets once per step
POLLING = 6.0  # seconds of (fake) polling


async def test_short_sessions_renewed_once_per_lifetime(
    start_simulator: SimulatorFactory, serve_bridge: ServeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025(session_ttl=TTL))
    bridge = await serve_bridge(
        sim.url,
        FAST_BACKOFF,
        clock=clock,
        upstream={"vars_interval": 0.2},
        cache={"refresh": 0.3, "max_stale": 5.0},
        clients={"trusted_lan": True},
    )
    statuses: list[int] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await session.get(f"{bridge.url}/auth?login")
        for _ in range(round(POLLING / STEP)):
            for target in ("/cgi-bin/dl_cgi?Command=DeviceList", "/vars?match=livedata"):
                async with session.get(bridge.url + target) as answer:
                    await answer.read()
                    statuses.append(answer.status)
            await clock.advance(STEP)
            await idle(bridge)
    stats: dict[str, Any] = await sim.stats()
    assert len(statuses) == 2 * round(POLLING / STEP)
    assert set(statuses) == {200}
    logins = stats["logins"]
    assert 2 <= logins <= POLLING / TTL + 2, stats
    assert stats["login_failures"] == 0
    assert logins < len(statuses) / 10  # far fewer than one per request
