"""Graceful stop on SIGTERM and warm start from the last good DeviceList."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.cache.warmstore import FILE_NAME, WarmStore
from bridge.clock import FakeClock
from bridge.pvs.answer import Answer
from tests.support import (
    DEVICE_LIST,
    FAULT_TIMING,
    GET_COMM,
    ServeFactory,
    Sim,
    SimulatorFactory,
    free_port,
    idle,
    raw_request,
    serve_process,
)


async def start_serve(upstream: str, state_dir: Path, port: int) -> asyncio.subprocess.Process:
    """`pvs-bridge serve` as a real process, as systemd runs it."""
    return await serve_process(upstream, state_dir, port, env={"PVS_BRIDGE_UPSTREAM_TIMEOUT": "60"})


async def wait_serving(session: aiohttp.ClientSession, url: str) -> None:
    """Poll /health until the process answers (bounded: 100 tries)."""
    for _ in range(100):
        try:
            async with session.get(f"{url}/health") as response:
                await response.read()
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise AssertionError("the bridge never started serving")


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any], bytes]:
    async with session.get(url) as response:
        return response.status, dict(response.headers), await response.read()


async def test_sigterm_answers_waiting_clients_then_a_restart_serves_at_once(
    simulator: Sim, tmp_path: Path
) -> None:
    sim = simulator
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        process = await start_serve(sim.url, tmp_path, port)
        try:
            await wait_serving(session, url)
            status, _, body = await get(session, url + DEVICE_LIST)
            assert status == 200
            for _ in range(20):
                assert (await get(session, url + DEVICE_LIST))[0] == 200
            assert not (tmp_path / FILE_NAME).exists()  # nothing written per request

            await sim.fault("hang")
            waiting = asyncio.create_task(get(session, url + GET_COMM))
            for _ in range(200):
                if (await sim.stats())["current"] == 1:
                    break
                await asyncio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            status, headers, answer = await waiting
            assert status == 503
            assert headers["Content-Type"].startswith("application/json")
            assert json.loads(answer)["error"] == "shutting_down"
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        stored = json.loads((tmp_path / FILE_NAME).read_text())
        assert stored["upstream"] == sim.url

        await sim.fault("down")  # the PVS is rebooting too: only the stored copy can help
        process = await start_serve(sim.url, tmp_path, port)
        try:
            await wait_serving(session, url)
            status, headers, again = await get(session, url + DEVICE_LIST)
            assert status == 200
            assert headers["X-Cache"] in ("HIT", "STALE")
            assert again == body
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


GET_DEVICE_LIST_1_0 = b"GET " + DEVICE_LIST.encode() + b" HTTP/1.0\r\n\r\n"


async def test_the_stored_answer_keeps_its_true_age(
    simulator: Sim, serve_bridge: ServeFactory, tmp_path: Path
) -> None:
    sections: dict[str, Any] = {
        "server": {"state_dir": str(tmp_path)},
        "cache": {"warm_start": True, "max_stale": 900.0},
    }
    first = FakeClock(wall_start=1_700_000_000.0)
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=first, **sections)
    answer = await raw_request(bridge.port, GET_DEVICE_LIST_1_0)
    assert answer is not None
    assert answer.status == 200
    await bridge.close()
    await simulator.fault("down")
    # Restarted 100 s later (wall clock); the PVS does not answer.
    later = FakeClock(wall_start=1_700_000_100.0)
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=later, **sections)
    again = await raw_request(bridge.port, GET_DEVICE_LIST_1_0)
    assert again is not None
    assert (again.status, again.headers["x-cache"]) == (200, "STALE")
    assert int(again.headers["age"]) == 100
    assert again.body == answer.body
    await bridge.close()
    # Restarted after the maximum staleness: the stored answer is too old to serve.
    much_later = FakeClock(wall_start=1_700_001_000.0)
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=much_later, **sections)
    refused = await raw_request(bridge.port, GET_DEVICE_LIST_1_0)
    assert refused is not None
    assert refused.status in (502, 503, 504)
    assert refused.json()["last_good_age_s"] is None  # nothing this run can vouch for


async def test_a_restart_within_the_refresh_interval_asks_the_pvs_nothing(
    simulator: Sim, serve_bridge: ServeFactory, tmp_path: Path
) -> None:
    sections: dict[str, Any] = {
        "server": {"state_dir": str(tmp_path)},
        "cache": {"warm_start": True, "refresh": 60.0},
    }
    first = FakeClock(wall_start=1_700_000_000.0)
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=first, **sections)
    await idle(bridge)  # the warm-up DeviceList
    await bridge.close()
    assert await simulator.count("DeviceList") == 1
    # Restarted 5 s later (a crash loop, an upgrade): the stored answer is still fresh.
    later = FakeClock(wall_start=1_700_000_005.0)
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=later, **sections)
    await idle(bridge)
    answer = await raw_request(bridge.port, GET_DEVICE_LIST_1_0)
    assert answer is not None
    assert (answer.status, answer.headers["x-cache"]) == (200, "HIT")
    assert int(answer.headers["age"]) == 5
    await idle(bridge)
    # Health knows when the PVS last answered (in the run before): ok, not
    # "waiting for the first answer" (which kept the Ansible role waiting).
    health = await raw_request(bridge.port, b"GET /health HTTP/1.0\r\n\r\n")
    assert health is not None
    assert health.json()["status"] == "ok", health.json()["reasons"]
    assert health.json()["upstream"]["last_success_age_s"] == 5.0
    await bridge.close()
    assert await simulator.count("DeviceList") == 1


async def test_a_stored_answer_from_another_pvs_is_ignored(
    start_simulator: SimulatorFactory, serve_bridge: ServeFactory, tmp_path: Path
) -> None:
    sections: dict[str, Any] = {
        "server": {"state_dir": str(tmp_path)},
        "cache": {"warm_start": True},
    }
    one, other = await start_simulator(), await start_simulator()
    bridge = await serve_bridge(one.url, FAULT_TIMING, clock=FakeClock(), **sections)
    assert (await raw_request(bridge.port, GET_DEVICE_LIST_1_0)) is not None
    await bridge.close()
    await other.fault("down")
    bridge = await serve_bridge(other.url, FAULT_TIMING, clock=FakeClock(), **sections)
    answer = await raw_request(bridge.port, GET_DEVICE_LIST_1_0)
    assert answer is not None
    assert answer.status >= 500


@pytest.mark.parametrize(
    ("boot_at_load", "synchronised", "used"),
    [
        ("boot-1", False, True),  # a service restart: same boot, the clock kept running
        ("boot-2", True, True),  # after a reboot, once NTP has set the clock
        ("boot-2", False, False),  # after a reboot, before it: the age cannot be known
    ],
)
def test_stored_age_is_trusted_across_a_reboot_only_with_a_synchronised_clock(
    tmp_path: Path, boot_at_load: str, synchronised: bool, used: bool
) -> None:
    clock = FakeClock(wall_start=1_700_000_000.0)
    answer = Answer(200, b'{"devices": []}', "application/json", fetched_wall=clock.wall())
    path = tmp_path / FILE_NAME
    assert WarmStore(path, "http://pvs", clock, boot=lambda: "boot-1").save(answer)
    later = FakeClock(wall_start=1_700_000_060.0)
    store = WarmStore(
        path, "http://pvs", later, boot=lambda: boot_at_load, synchronised=lambda: synchronised
    )
    loaded = store.load(max_stale=900.0)
    assert (loaded is not None) == used
    if loaded is not None:
        assert later.monotonic() - loaded.fetched_at == 60.0
