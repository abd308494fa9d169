"""Attack benchmark: a polite client's latency while hostile clients and a hostile PVS strike.

A simulated PVS and a bridge run as `pvs-bridge simulate` and `pvs-bridge serve`, each in
a process of its own, on 127.0.0.1. The attacks run in this process: they cannot slow the
bridge's event loop except through the bridge's own sockets. During each attack one
well-behaved client (one kept-alive connection) asks the bridge for DeviceList every
POLL seconds and notes each answer's time; the table gives its p50, p99 and worst time
and its errors, the bridge's open file descriptors, and the simulated PVS's
`max_concurrent` at the end.

Client attacks: idle kept-alive connections, silent connections, slowloris, distinct
huge header sets, malformed requests, hang-ups in the middle of a body. PVS attacks:
the simulator's hostile fault modes (whichever of them this simulator has), during
which the bridge answers from memory.

Bounded: each attack has a fixed count of connections or requests and lasts at most
PHASE seconds (plus its set-up). Exits 1 when the polite client saw an error or a p99
over GOAL_MS. Prints a Markdown table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bridge.simulator.faults import MODES  # noqa: E402

PHASE = 8.0
POLL = 0.02
GOAL_MS = 50.0
DEVICE_LIST = "/cgi-bin/dl_cgi?Command=DeviceList"
# Hostile PVS modes, as the simulator names them (those it lacks are skipped).
PVS_ATTACKS = ("huge_body", "endless_body", "redirect", "too_many", "unsolicited", "hang")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Polite:
    """The well-behaved client's answers in one phase."""

    times_ms: list[float] = field(default_factory=list)
    errors: int = 0
    fds: int = 0

    def row(self) -> tuple[float, float, float]:
        ordered = sorted(self.times_ms) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return statistics.median(ordered), p99, ordered[-1]


async def polite(base: str, stop: asyncio.Event, seen: Polite) -> None:
    """One kept-alive connection, one DeviceList every POLL seconds, until `stop`."""
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with session.get(base + DEVICE_LIST) as response:
                    await response.read()
                    if response.status != 200:
                        seen.errors += 1
            except (aiohttp.ClientError, TimeoutError):
                seen.errors += 1
            seen.times_ms.append((time.perf_counter() - started) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL)


# -- client attacks: each opens its connections and holds or abuses them for the phase ----


async def hold(port: int, count: int, first: bytes, drip: bytes, stop: asyncio.Event) -> None:
    """`count` connections that send `first`, then `drip` once a second, until `stop`."""
    writers: list[asyncio.StreamWriter] = []
    for _ in range(count):
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        writers.append(writer)
        if first:
            writer.write(first)
    while not stop.is_set():
        for writer in writers:
            if drip and not writer.is_closing():
                writer.write(drip)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    for writer in writers:
        writer.close()


async def idle_keepalive(port: int, stop: asyncio.Event) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: bridge\r\n\r\n"
    await hold(port, 1200, request, b"", stop)


async def silent(port: int, stop: asyncio.Event) -> None:
    await hold(port, 1200, b"", b"", stop)


async def slowloris(port: int, stop: asyncio.Event) -> None:
    await hold(port, 400, b"GET / HTTP/1.1\r\nHost: bridge\r\n", b"X-a: b\r\n", stop)


async def one_shot(port: int, payload: bytes, *, read: bool) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    writer.write(payload)
    if read:
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(reader.read(65536), 5)
    writer.close()


async def huge_headers(port: int, stop: asyncio.Event) -> None:
    for index in range(300):
        if stop.is_set():
            return
        headers = b"".join(
            f"X-{index}-{n}: {'v' * 8000}\r\n".encode() for n in range(23)
        )  # about 185 KB of distinct headers per request
        request = b"GET " + DEVICE_LIST.encode() + b" HTTP/1.1\r\nHost: b\r\n" + headers + b"\r\n"
        await one_shot(port, request, read=True)


async def malformed(port: int, stop: asyncio.Event) -> None:
    shapes = (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /\x00 HTTP/1.1\r\n\r\n")
    for index in range(300):
        if stop.is_set():
            return
        await one_shot(port, shapes[index % len(shapes)], read=True)


async def hangups(port: int, stop: asyncio.Event) -> None:
    head = b"POST /cgi-bin/dl_cgi?Command=DeviceList HTTP/1.1\r\nHost: b\r\n"
    for _ in range(60):
        if stop.is_set():
            return
        await one_shot(port, head + b"Content-Length: 1000\r\n\r\n0123456789", read=False)


CLIENT_ATTACKS: dict[str, Callable[[int, asyncio.Event], Awaitable[None]]] = {
    "1,200 idle kept-alive connections": idle_keepalive,
    "1,200 silent connections": silent,
    "400 slowloris connections": slowloris,
    "300 distinct ~185 KB header sets": huge_headers,
    "300 malformed requests": malformed,
    "60 hang-ups mid-body": hangups,
}


# -- the processes -------------------------------------------------------------------------


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


async def start(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def wait_for_line(process: asyncio.subprocess.Process, pattern: str) -> re.Match[str]:
    assert process.stdout is not None
    for _ in range(200):  # bounded: the first lines of a starting process
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        found = re.search(pattern, line)
        if found:
            return found
    raise RuntimeError(f"never saw {pattern!r}")


async def drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


async def sim_control(session: aiohttp.ClientSession, control: str, mode: str) -> None:
    async with session.post(control, json={"mode": mode}) as response:
        await response.read()


async def sim_stats(session: aiohttp.ClientSession, sim: str) -> dict[str, object]:
    async with session.get(sim + "/_sim/stats") as response:
        return dict(json.loads(await response.read()))


async def most_fds(pid: int, stop: asyncio.Event, seen: Polite) -> None:
    """The bridge's open file descriptors, sampled twice a second, at their highest."""
    while not stop.is_set():
        seen.fds = max(seen.fds, open_fds(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def phase(
    base: str, pid: int, attack: Callable[[asyncio.Event], Awaitable[None]] | None
) -> Polite:
    seen = Polite()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(polite(base, stop, seen)),
        asyncio.create_task(most_fds(pid, stop, seen)),
    ]
    if attack is not None:
        tasks.append(asyncio.create_task(attack(stop)))
    await asyncio.sleep(PHASE)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return seen


async def main() -> int:
    raise_fd_limit()
    sim_port, bridge_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PVS_")}
    state = tempfile.mkdtemp(prefix="bench-attacks-")
    env.update(
        PVS_BRIDGE_SERVER_STATE_DIR=state,
        PVS_BRIDGE_SERVER_LISTEN_WS="",
        PVS_BRIDGE_UPSTREAM_WS_URL="off",
        PVS_BRIDGE_SERVER_SUMMARY_INTERVAL="0",
    )
    sim = await start(["simulate", "--listen", f"127.0.0.1:{sim_port}", "--latency", "0.3"], env)
    control = (await wait_for_line(sim, r"control also at (\S+/_sim/faults)")).group(1)
    sim_drain = asyncio.create_task(drain(sim))
    sim_url = f"http://127.0.0.1:{sim_port}"
    bridge = await start(
        ["serve", "--listen", f"127.0.0.1:{bridge_port}", "--upstream", sim_url,
         "--refresh", "5", "--max-stale", "3600"], env,
    )  # fmt: skip
    bridge_drain = asyncio.create_task(drain(bridge))
    base = f"http://127.0.0.1:{bridge_port}"
    rows: list[tuple[str, Polite, object]] = []
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # bounded: up to ~20 s for the first read
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + "/health") as response:
                        if (await response.json()).get("status") == "ok":
                            break
                await asyncio.sleep(0.2)
            plan: list[tuple[str, Callable[[asyncio.Event], Awaitable[None]] | None, str]] = [
                ("none (baseline)", None, "")
            ]
            for name, attack in CLIENT_ATTACKS.items():
                plan.append((name, lambda stop, attack=attack: attack(bridge_port, stop), ""))
            plan += [(f"PVS: {mode}", None, mode) for mode in PVS_ATTACKS if mode in MODES]
            for name, attack, mode in plan:
                if mode:
                    await sim_control(session, control, mode)
                seen = await phase(base, bridge.pid, attack)
                if mode:
                    await sim_control(session, control, "ok")
                stats = await sim_stats(session, sim_url)
                rows.append((name, seen, stats.get("max_concurrent")))
                print(f"  {name}: p99 {seen.row()[1]:.1f} ms, {seen.errors} errors", flush=True)
                await asyncio.sleep(1.0)  # let closed connections go before the next attack
    finally:
        for process in (bridge, sim):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(bridge.wait(), sim.wait()), 30)
        await asyncio.gather(sim_drain, bridge_drain)
    print()
    print(
        "| attack | polite answers | p50 ms | p99 ms | worst ms | errors "
        "| bridge fds (most) | PVS max_concurrent |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    for name, seen, concurrent in rows:
        p50, p99, worst = seen.row()
        failed |= seen.errors > 0 or p99 > GOAL_MS
        print(
            f"| {name} | {len(seen.times_ms)} | {p50:.1f} | {p99:.1f} | {worst:.1f} | "
            f"{seen.errors} | {seen.fds} | {concurrent} |"
        )
    print(f"\ngoal: no errors and p99 under {GOAL_MS:.0f} ms in every row: "
          + ("FAILED" if failed else "met"))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
