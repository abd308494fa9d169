"""The home page at `/`: the site now, today so far, each panel, the PVS's health, in a
real browser (headless Chromium), in front of the simulator.

The page is self-contained and small, `HEAD /` still answers probes, reading the page
and its JSON costs the PVS nothing beyond the one shared device read, and today's curve
survives a restart. Chromium is a real component here: the browser tests are skipped
only where it is not installed. `PVS_BRIDGE_SCREENSHOT=docs/home-page.png` keeps the
screenshot the last test takes (the README's picture).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import struct
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.cache.history import History
from bridge.cache.history_store import FILE_NAME, HistoryStore
from bridge.clock import FakeClock
from tests.support import (
    DEVICE_LIST,
    Served,
    ServeFactory,
    Sim,
    SimulatorFactory,
    advance,
    bridge_app,
    idle,
    served_bridge,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)
SITE_TZ = "Etc/GMT+8"  # the simulated site's time zone (UTC-8, simulator.model.Site)
SITE_NOON = datetime(2025, 6, 21, 20, 0, tzinfo=UTC).timestamp()  # 12:00 at the site
TILE = re.compile(r'<div class="tile (\w+)"')
EXTERNAL = re.compile(rb"https?:|(?:src|href|action)\s*=\s*[\"']?//|@import|url\(", re.I)


@pytest.fixture
def site_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bridge's local time is the simulated site's, so its day is the site's day."""
    monkeypatch.setenv("TZ", SITE_TZ)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, url
        return await response.json()


async def site_json(session: aiohttp.ClientSession, bridge: Served) -> dict[str, Any]:
    document: dict[str, Any] = await get_json(session, f"{bridge.url}/site.json")
    return document


async def production(session: aiohttp.ClientSession, bridge: Served) -> float:
    """The production meter's power in the DeviceList the bridge serves (from its cache)."""
    devices = (await get_json(session, bridge.url + DEVICE_LIST))["devices"]
    (meter,) = [d for d in devices if str(d.get("TYPE", "")).endswith("-P")]
    return float(meter["p_3phsum_kw"])


async def chromium(profile: Path, *args: str) -> bytes:
    """Run headless Chromium to its end (stdout)."""
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0
    return out


async def minutes_of_reads(clock: FakeClock, bridge: Served, minutes: int) -> None:
    """Let fake minutes pass, the refresh-ahead reading the device list each minute."""
    for _ in range(minutes):
        await advance(clock, bridge, 60.0)


# -- the page itself --------------------------------------------------------------------


async def test_head_answers_probes_and_the_page_is_small_and_self_contained(
    start_simulator: SimulatorFactory,
    serve_bridge: ServeFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    site_time: None,
) -> None:
    # The largest page there is: a whole day of minutes (kept from a previous run), 12
    # panels.
    clock = FakeClock(wall_start=SITE_NOON + 11 * 3600 + 59 * 60)  # 23:59 at the site
    history = History()
    for minute in range(1439):
        history.add(SITE_NOON - 12 * 3600 + 60 * minute, {"pv_p": 3.214, "site_load_p": 1.1})
    assert HistoryStore(tmp_path / FILE_NAME, history, clock).save()
    sim = await start_simulator(clock)
    bridge = await serve_bridge(sim.url, clock=clock, server={"state_dir": str(tmp_path)})
    async with session.head(f"{bridge.url}/") as head:
        assert head.status == 200
    assert len((await site_json(session, bridge))["curve"]) == 1439
    await idle(bridge)
    async with session.get(f"{bridge.url}/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.read()
    assert b"Solar at home" in page and page.count(b"E00122") >= 12
    assert len(page) < 100_000
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    links = re.findall(rb"(?:href|src)\s*=\s*\"([^\"]*)\"", page)
    assert links and all(link.startswith(b"/") for link in links), links
    assert {b"/health", b"/metrics", b"/cgi-bin/dl_cgi?Command=DeviceList"} <= set(links)


async def test_the_page_and_its_json_cost_the_pvs_nothing_beyond_the_device_read(
    simulator: Sim, serve_bridge: ServeFactory, session: aiohttp.ClientSession
) -> None:
    bridge = await serve_bridge(simulator.url)
    for _ in range(10):  # a monitor's GET / (and HEAD /) is no read of the device list
        async with session.get(f"{bridge.url}/") as response:
            assert response.status == 200
        async with session.head(f"{bridge.url}/") as response:
            assert response.status == 200
    assert (await simulator.stats())["requests"] == {}
    for _ in range(50):
        async with session.get(f"{bridge.url}/") as response:
            assert response.status == 200 and b"<svg" in await response.read()
        await site_json(session, bridge)  # the first one asks for the shared read
    await idle(bridge)
    document = await site_json(session, bridge)
    assert (await simulator.stats())["requests"] == {"DeviceList": 1}
    assert len(document["inverters"]) == 12
    assert document["power"]["pv_kw"] == await production(session, bridge)
    assert document["health"]["status"] == "ok" and document["health"]["reasons"] == []
    assert (await simulator.stats())["requests"] == {"DeviceList": 1}


async def test_todays_curve_survives_a_restart(
    start_simulator: SimulatorFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    site_time: None,
) -> None:
    clock = FakeClock(wall_start=SITE_NOON)
    sim = await start_simulator(clock)
    settings: dict[str, Any] = {"clock": clock, "server": {"state_dir": str(tmp_path)}}
    async with served_bridge(bridge_app(sim.url, **settings)) as first:
        await production(session, first)  # a client of the device list
        await minutes_of_reads(clock, first, 4)
        before = (await site_json(session, first))["curve"]
    assert len(before) == 5 and all(pv > 0 for _minute, pv, _load in before)
    assert (tmp_path / FILE_NAME).exists()
    async with served_bridge(bridge_app(sim.url, **settings)) as second:
        after = (await site_json(session, second))["curve"]
        assert after[:5] == before
        await idle(second)
        today = (await site_json(session, second))["today"]
    assert today["since"] == SITE_NOON and today["pv_kwh"] > 0


def embedded(page: bytes) -> dict[str, Any]:
    """The document the page carries for its first paint."""
    found = re.search(rb'<script id="site" type="application/json">(.*?)</script>', page, re.S)
    assert found is not None
    document: dict[str, Any] = json.loads(found[1])
    return document


async def test_an_open_page_keeps_the_device_list_fresh_at_one_read_per_interval(
    start_simulator: SimulatorFactory, serve_bridge: ServeFactory, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock)
    bridge = await serve_bridge(sim.url, clock=clock, cache={"idle_after": 120.0})
    await site_json(session, bridge)  # nothing held: the one shared read
    await idle(bridge)
    for _ in range(5):  # the page polls: interest, as a client's read
        await advance(clock, bridge, 60.0)
        for _ in range(3):
            await site_json(session, bridge)
    assert await sim.count() == 6  # one per minute (cache.refresh), however often asked
    await advance(clock, bridge, 600.0, step=60.0)  # the page closed: after idle_after, none
    stopped = await sim.count()
    assert stopped <= 8
    await advance(clock, bridge, 600.0, step=60.0)
    assert await sim.count() == stopped


async def test_the_pvs_live_feed_fills_the_curve_without_a_device_read(
    start_simulator: SimulatorFactory, serve_bridge: ServeFactory, session: aiohttp.ClientSession
) -> None:
    sim = await start_simulator(feed=True, inverters=4)
    async with sim.session.post(f"{sim.control}/_sim/feed", json={"jitter": True}) as answer:
        assert answer.status == 200
    bridge = await serve_bridge(sim.url, upstream={"ws_url": sim.simulator.feed_url})
    document: dict[str, Any] = {}
    for _ in range(500):
        async with session.get(f"{bridge.url}/") as response:
            document = embedded(await response.read())  # GET / reads nothing itself
        if document["curve"]:
            break
        await asyncio.sleep(0.01)
    assert document["curve"] and document["power"]["pv_kw"] is not None
    assert document["health"]["live"] == "live from the PVS's own feed"
    assert "DeviceList" not in (await sim.stats())["requests"]


# -- in a browser -----------------------------------------------------------------------


@needs_chromium
async def test_in_a_browser_production_a_tile_per_panel_and_the_curve_after_a_restart(
    start_simulator: SimulatorFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    site_time: None,
) -> None:
    clock = FakeClock(wall_start=SITE_NOON)
    sim = await start_simulator(clock)
    settings: dict[str, Any] = {"clock": clock, "server": {"state_dir": str(tmp_path)}}
    async with served_bridge(bridge_app(sim.url, **settings)) as first:
        await production(session, first)
        await minutes_of_reads(clock, first, 3)
        before = (await site_json(session, first))["curve"]
    await clock.advance(60.0)
    async with served_bridge(bridge_app(sim.url, **settings)) as second:
        await site_json(session, second)  # the device read
        await idle(second)
        pv = await production(session, second)
        dom = (await chromium(tmp_path / "profile", "--dump-dom", f"{second.url}/")).decode()
    assert re.search(rf'<b id="pv" data-kw="{pv}">{pv:.2f} kW</b>', dom), dom[:3000]
    assert TILE.findall(dom) == ["ok"] * 12
    assert 'class="pill ok">PVS ok<' in dom
    samples = re.search(r'<svg id="curve"[^>]* data-samples="(\d+)"', dom)
    assert samples is not None and int(samples[1]) == len(before) + 1 == 5
    curve = re.search(r'<svg id="curve".*?</svg>', dom, re.S)
    assert curve is not None and curve[0].count("<path") == 3  # area, production, consumption


@needs_chromium
async def test_a_screenshot_of_the_page_with_twelve_panels(
    start_simulator: SimulatorFactory, tmp_path: Path, site_time: None
) -> None:
    clock = FakeClock(wall_start=SITE_NOON - 7 * 3600)  # 05:00 at the site
    sim = await start_simulator(clock, inverters=12)
    app = bridge_app(sim.url, clock=clock, cache={"idle_after": 86400.0})
    async with served_bridge(app) as bridge, aiohttp.ClientSession() as session:
        await production(session, bridge)
        await minutes_of_reads(clock, bridge, 9 * 60 + 40)  # until 14:40
        shot = tmp_path / "home-page.png"
        await chromium(
            tmp_path / "profile",
            f"--screenshot={shot}",
            "--window-size=900,1100",
            f"{bridge.url}/",
        )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (900, 1100)
    assert len(data) < 150_000
    keep = os.environ.get("PVS_BRIDGE_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
