"""Chaos run: clients poll through the bridge while the simulated PVS cycles through faults.

Everything runs on 127.0.0.1 in this process: a simulator, a bridge served exactly as
`pvs-bridge serve` serves it, and N polling clients. Each fault lasts `--phase` seconds
and is followed by a recovery phase (`ok`) that measures how long the bridge takes to
report `ok` again. At the end the fragile PVS is polled by the same clients directly,
for comparison. Bounded: phases x seconds, plus a few seconds; prints a Markdown table.

`abandoned` is no fault mode of the simulator: for that phase its DeviceList takes longer
than the bridge waits for it, and the simulator, as a PVS does, works on to the end after
the bridge has hung up; the bridge must not send the next one before that end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bridge import config
from bridge.app import create_app
from bridge.simulator import server as sim_server
from bridge.web.runner import make_runner

DEVICE_LIST = "/cgi-bin/dl_cgi?Command=DeviceList"
FRAGILE: dict[str, Any] = {"rate": 4, "window": 10.0, "strain_limit": 3, "reboot_seconds": 3.0}
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("slow", {"latency": 2.5}),
    ("hang", {}),
    ("error500", {}),
    ("error403", {}),
    ("reset", {}),
    ("truncate", {}),
    ("nometers", {}),
    ("down", {}),
    ("flaky", {"fraction": 0.5, "seed": 3}),
    ("huge_body", {}),  # a 100 MB DeviceList (Content-Length announced)
    ("endless_body", {}),  # chunked, never ending
    ("redirect", {}),
    ("too_many", {"retry_after": 10}),
    ("unsolicited", {}),
    ("abandoned", {}),
    ("fragile", FRAGILE),
]
LATENCY = 0.3  # seconds a DeviceList takes
ABANDONED_LATENCY = 5.0  # abandoned: past the bridge's 3 s, 2 s of work left when it hangs up
AFTER_TIMEOUT = 4.0  # the bridge leaves a PVS alone this long after a timeout


@dataclass
class Phase:
    """What clients and the PVS saw during one phase."""

    name: str
    answers: Counter[str] = field(default_factory=Counter)
    longest_wait: float = 0.0
    max_age: int = 0
    upstream: int = 0
    reboots: int = 0
    recovery: float | None = None
    body_bytes: int = 0  # of the oversized bodies the PVS managed to send


@dataclass
class Run:
    """Shared state of the polling clients."""

    phase: Phase
    stop: bool = False


async def client(session: aiohttp.ClientSession, url: str, run: Run, pause: float) -> None:
    """Poll DeviceList until told to stop (bounded by the run's phases)."""
    while not run.stop:
        phase, started = run.phase, time.monotonic()
        try:
            async with session.get(url + DEVICE_LIST) as response:
                await response.read()
                state = response.headers.get("X-Cache", "-")
                phase.answers[f"{response.status} {state}"] += 1
                if response.status == 200:
                    phase.max_age = max(phase.max_age, int(response.headers.get("Age", "0")))
        except (aiohttp.ClientError, TimeoutError):
            phase.answers["no answer"] += 1
        phase.longest_wait = max(phase.longest_wait, time.monotonic() - started)
        await asyncio.sleep(pause)


async def control(
    session: aiohttp.ClientSession,
    sim: sim_server.Simulator,
    path: str,
    document: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """GET or POST a simulator control endpoint (on its side port)."""
    method = "POST" if document is not None else "GET"
    async with session.request(method, sim.control_url + path, json=document) as response:
        result: dict[str, Any] = await response.json()
        return result


async def health_ok(session: aiohttp.ClientSession, url: str) -> bool:
    """Whether the bridge's /health says ok."""
    async with session.get(url + "/health") as response:
        return bool((await response.json())["status"] == "ok")


async def main(args: argparse.Namespace) -> None:
    """Run every phase and print the table."""
    simulator = sim_server.build(sim_server.SimulatorOptions(latency=LATENCY))
    sim_runner, sim_url = await sim_server.start(simulator, "127.0.0.1", 0)
    # server.listen is not bound: the site below picks a free loopback port.
    cfg = config.load(
        None,
        environ={},
        overrides={
            "server": {
                "listen": ["127.0.0.1:8080"],
                "summary_interval": 0.0,
                "state_dir": "/nonexistent",
            },
            "upstream": {
                "url": sim_url,
                "timeout": 2.0,
                "devicelist_timeout": 3.0,
                "backoff_initial": 1.0,
                "backoff_max": 8.0,
                "after_timeout": AFTER_TIMEOUT,
                "ws_url": "off",  # this run is about the HTTP side; no feed to connect to
            },
            "cache": {"refresh": 5.0, "max_stale": args.max_stale},
            "rate_limit": {"enabled": False},
        },
    )
    runner = make_runner(create_app(cfg), cfg.server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    phases: list[Phase] = []
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        run = Run(Phase("warm-up"))
        clients = [
            asyncio.create_task(client(session, url, run, args.pause)) for _ in range(args.clients)
        ]
        await asyncio.sleep(2.0)
        for mode, params in FAULTS:
            phases.append(await fault_phase(session, simulator, run, mode, params, args.phase))
            phases.append(await recovery_phase(session, simulator, url, run, mode, args.phase))
        run.stop = True
        await asyncio.gather(*clients)
        sim_stats = await control(session, simulator, "/_sim/stats")
        sim_stats["faults"] = await control(session, simulator, "/_sim/faults")
        direct = await direct_fragile(session, simulator, sim_url, args)
    await runner.cleanup()
    await sim_runner.cleanup()
    print_table(phases, sim_stats, direct, args)


async def fault_phase(
    session: aiohttp.ClientSession,
    sim: sim_server.Simulator,
    run: Run,
    mode: str,
    params: dict[str, Any],
    seconds: float,
) -> Phase:
    """Hold one fault for `seconds` while the clients poll."""
    before = await control(session, sim, "/_sim/stats")
    faults_before = await control(session, sim, "/_sim/faults")
    run.phase = phase = Phase(mode)
    if mode == "abandoned":
        sim.options.latency = ABANDONED_LATENCY
        mode = "ok"
    await control(session, sim, "/_sim/faults", {"mode": mode, **params})
    await asyncio.sleep(seconds)
    after = await control(session, sim, "/_sim/stats")
    phase.upstream = after["total"] - before["total"]
    faults_after = await control(session, sim, "/_sim/faults")
    phase.reboots = faults_after["reboots"] - faults_before["reboots"]
    phase.body_bytes = faults_after["body_bytes_sent"] - faults_before["body_bytes_sent"]
    return phase


async def recovery_phase(
    session: aiohttp.ClientSession,
    sim: sim_server.Simulator,
    url: str,
    run: Run,
    mode: str,
    seconds: float,
) -> Phase:
    """Back to `ok`: how long until /health says ok (bounded by 3 phases)."""
    before = await control(session, sim, "/_sim/stats")
    run.phase = phase = Phase(f"ok after {mode}")
    sim.options.latency = LATENCY
    await control(session, sim, "/_sim/faults", {"mode": "ok"})
    started = time.monotonic()
    while time.monotonic() - started < 3 * seconds:
        if await health_ok(session, url):
            phase.recovery = time.monotonic() - started
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
    phase.upstream = (await control(session, sim, "/_sim/stats"))["total"] - before["total"]
    return phase


async def direct_fragile(
    session: aiohttp.ClientSession,
    sim: sim_server.Simulator,
    sim_url: str,
    args: argparse.Namespace,
) -> Phase:
    """The same clients polling the fragile PVS directly, for comparison."""
    before = await control(session, sim, "/_sim/stats")
    reboots = (await control(session, sim, "/_sim/faults"))["reboots"]
    await control(session, sim, "/_sim/faults", {"mode": "fragile", **FRAGILE})
    run = Run(Phase("fragile, direct"))
    direct_timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=direct_timeout) as direct:
        clients = [
            asyncio.create_task(client(direct, sim_url, run, args.pause))
            for _ in range(args.clients)
        ]
        await asyncio.sleep(args.phase)
        run.stop = True
        await asyncio.gather(*clients)
    run.phase.upstream = (await control(session, sim, "/_sim/stats"))["total"] - before["total"]
    run.phase.reboots = (await control(session, sim, "/_sim/faults"))["reboots"] - reboots
    return run.phase


def print_table(
    phases: list[Phase], stats: dict[str, Any], direct: Phase, args: argparse.Namespace
) -> None:
    """The Markdown table docs/chaos.md shows."""
    print(
        f"\nchaos run: {args.clients} clients polling every {args.pause:g} s, "
        f"{args.phase:g} s per phase, max staleness {args.max_stale:g} s\n"
    )
    print(
        "| phase | client answers (status X-Cache) | longest wait s | oldest Age served s "
        "| upstream calls | PVS reboots | recovered to ok in s |"
    )
    print("|---|---|---|---|---|---|---|")
    for phase in [*phases, direct]:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(phase.answers.items()))
        recovery = "" if phase.recovery is None else f"{phase.recovery:.1f}"
        if phase.name.startswith("ok after") and phase.recovery is None:
            recovery = "not within 3 phases"
        print(
            f"| {phase.name} | {answers} | {phase.longest_wait:.2f} | {phase.max_age} "
            f"| {phase.upstream} | {phase.reboots} | {recovery} |"
        )
    total: Counter[str] = Counter()
    for phase in phases:
        total.update(phase.answers)
    print(
        f"\nthrough the bridge: {sum(total.values())} client answers "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(total.items()))}); "
        f"PVS saw {stats['total']} requests, at most {stats['max_concurrent']} at once "
        f"(abandoned by the bridge and worked on to their end: {stats.get('abandoned', 0)})"
    )
    faults = stats["faults"]
    sent = ", ".join(
        f"{phase.name} {phase.body_bytes / 1e6:.1f} MB" for phase in phases if phase.body_bytes
    )
    print(
        f"oversized bodies the PVS got onto the socket (the bridge reads at most "
        f"max_body_bytes, 8 MiB, of each): {sent or 'none'}; unsolicited answers: "
        f"{faults['unsolicited_sent']} written on an open connection, "
        f"{faults['unsolicited_dropped']} found it closed"
    )


def parse_args() -> argparse.Namespace:
    """Command-line options (defaults: about 2.5 minutes)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between polls")
    parser.add_argument("--phase", type=float, default=6.0, help="seconds per phase")
    parser.add_argument("--max-stale", type=float, default=60.0)
    args = parser.parse_args()
    if not (1 <= args.clients <= 50 and 1 <= args.phase <= 60 and args.pause >= 0.01):
        parser.error("keep it bounded: 1-50 clients, 1-60 s phases, pause >= 0.01 s")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
