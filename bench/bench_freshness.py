"""Freshness benchmark: what share of answers is HIT or STALE beside the PVS's reads.

A bridge in front of the simulated PVS, 50 clients asking for DeviceList every quarter
second for two simulated minutes, refresh interval 3 s, at PVS latencies of 0.2, 1.5 and
10 s. The PVS's latency and the bridge's schedule run on one FakeClock, so the table
says what the design gives, exactly, not how busy this machine was (all traffic is real
HTTP on loopback). Prints a Markdown table.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from bridge import config
from bridge.app import create_app
from bridge.clock import FakeClock
from bridge.simulator import server
from bridge.simulator.server import SimulatorOptions

CLIENTS = 50
STEP_S = 0.25
SECONDS = 120.0
REFRESH_S = 3.0
LATENCIES = (0.2, 1.5, 10.0)
TARGET = "/cgi-bin/dl_cgi?Command=DeviceList"


async def serve_bridge(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def one_step(
    session: aiohttp.ClientSession, base: str, clock: FakeClock, seen: Counter[str]
) -> None:
    asked = [asyncio.create_task(session.get(base + TARGET)) for _ in range(CLIENTS)]
    await asyncio.sleep(0.01)
    while not all(task.done() for task in asked):  # a MISS waits on the PVS's fake time
        await clock.advance(0.05)
        await asyncio.sleep(0.005)
    for task in asked:
        response = task.result()
        seen[response.headers.get("X-Cache", str(response.status))] += 1
        response.release()
    await clock.advance(STEP_S)
    await asyncio.sleep(0.002)


async def measure(latency: float) -> dict[str, Any]:
    clock = FakeClock()
    options = SimulatorOptions(inverters=12, latency=latency, latency_on_clock=True)
    simulator = server.build(options, clock)
    sim_runner, sim_url = await server.start(simulator, "127.0.0.1", 0)
    cfg = config.load(
        None,
        environ={},
        overrides={
            "upstream": {"url": sim_url},
            "cache": {"refresh": REFRESH_S, "warm_start": False},
            "server": {"summary_interval": 0.0},
        },
    )
    runner, base = await serve_bridge(create_app(cfg, clock=clock))
    seen: Counter[str] = Counter()
    started = clock.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(round(SECONDS / STEP_S)):
                await one_step(session, base, clock, seen)
            stats = simulator.stats_document()
            elapsed = clock.monotonic() - started
    finally:
        await clock.advance(5.0)  # the stopping bridge's logout need not wait its turn
        await runner.cleanup()
        await sim_runner.cleanup()
    return {"latency": latency, "seen": seen, "stats": stats, "elapsed": elapsed}


def row(result: dict[str, Any]) -> str:
    seen: Counter[str] = result["seen"]
    total = sum(seen.values())
    stats = result["stats"]
    reads = stats["requests"].get("DeviceList", 0)
    share = {state: 100.0 * seen[state] / total for state in ("HIT", "STALE", "MISS")}
    return (
        f"| {result['latency']:g} s | {total} | {share['HIT']:.1f}% | {share['STALE']:.1f}% "
        f"| {seen['MISS']} | {reads} | {1 + result['elapsed'] // REFRESH_S:.0f} "
        f"| {stats['min_gap_s']} s |"
    )


async def main() -> None:
    results = [await measure(latency) for latency in LATENCIES]
    print(
        f"\n{CLIENTS} clients every {STEP_S:g} s for {SECONDS:g} s (simulated), "
        f"refresh {REFRESH_S:g} s\n"
    )
    print("| PVS latency | answers | HIT | STALE | MISS | DeviceList reads | at most | min gap |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print(row(result))


if __name__ == "__main__":
    asyncio.run(main())
