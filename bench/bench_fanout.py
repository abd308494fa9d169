"""Live-feed fan-out benchmark: LiveHub beside a bare aiohttp broadcast of the same frames.

Each server runs in a process of its own (`bench_fanout.py serve hub|bare`, commanded over
its stdin), both on the same event loop (uvloop when installed) on loopback; the clients
(aiohttp's own WebSocket client) all run in this process, in one event loop. The bare
broadcast is the floor: a set of WebSocketResponses and `await ws.send_str(frame)` for
each, one after the other.

Every frame carries the time its server published it (`time.perf_counter()`, which is
CLOCK_MONOTONIC on Linux: one clock for every process of the machine), and each client
notes when it received it, so the delay is measured exactly. Frames are spaced so that
neither side is saturated; the first WARMUP frames of each run are not counted. The CPU
time is the server process's own (`time.process_time()`) over the run, per frame.

Prints a Markdown table; exits 1 if the hub's p99 at the largest client count is over
GOAL times the bare broadcast's. Bounded: a few thousand frames and about a minute.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# clients -> (frames, seconds between frames): spaced so that 1,000 clients in one Python
# process read each frame well before the next one comes.
PLAN = {1: (200, 0.005), 100: (200, 0.01), 1000: (60, 0.1)}
WARMUP = 10
ROUNDS = 3  # each configuration measured this often, the best p99 kept
GOAL = 1.5
CONNECT_BATCH = 50
SERVERS = ("bare aiohttp broadcast", "LiveHub")


# -- the servers (child processes) ------------------------------------------------------


def frame_text(run: int, seq: int) -> str:
    """A PVS-shaped partial frame carrying its publish time (and where it belongs)."""
    return (
        f'{{"notification":"power","params":{{"time":{time.perf_counter():.9f},'
        f'"run":{run},"seq":{seq},"pv_p":{3 + seq % 7 / 10},"net_p":{-1 - seq % 5 / 10}}}}}'
    )


async def serve(kind: str) -> None:
    """One server: the hub's feed app or the bare broadcast, commanded over stdin."""
    from bridge.clock import Clock
    from bridge.config import ServerConfig
    from bridge.web.guard import Guards, Lifecycle
    from bridge.web.live import LiveHub, feed_app
    from bridge.web.runner import make_runner

    hub = LiveHub(Clock(), max_clients=100_000)
    sockets: set[web.WebSocketResponse] = set()

    async def bare_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.add(ws)
        try:
            async for _message in ws:
                pass
        finally:
            sockets.discard(ws)
        return ws

    if kind == "hub":
        runner = make_runner(feed_app(hub, Guards(Lifecycle(), 4096)), ServerConfig())
    else:
        bare = web.Application()
        bare.router.add_get("/", bare_handler)
        runner = web.AppRunner(bare, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)

    async def publish(text: str) -> None:
        if kind == "hub":
            hub.publish(text)
        else:
            for ws in tuple(sockets):
                await ws.send_str(text)

    while line := await asyncio.to_thread(sys.stdin.readline):
        command = json.loads(line)
        if command["cmd"] == "clients":
            answer: dict[str, Any] = {"clients": hub.clients if kind == "hub" else len(sockets)}
        else:
            answer = await run(publish, command["run"], command["frames"], command["interval"])
            answer["dropped"] = hub.counts.dropped_slow
        print(json.dumps(answer), flush=True)
    await runner.cleanup()


async def run(publish: Any, run_id: int, frames: int, interval: float) -> dict[str, Any]:
    """Publish `frames` frames `interval` apart; the CPU time that took."""
    cpu = time.process_time()
    next_at = time.perf_counter()
    for seq in range(frames):
        await publish(frame_text(run_id, seq))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.sleep(interval)  # the hub relays after publish returns: count that too
    return {"cpu_s": time.process_time() - cpu}


# -- the clients (this process) ---------------------------------------------------------


class Server:
    """A server process and its command pipe."""

    def __init__(self, kind: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "serve", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.ask_raw(None)["port"])

    def ask_raw(self, command: dict[str, Any] | None) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    async def ask(self, **command: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.ask_raw, command)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def measure(
    session: aiohttp.ClientSession, server: Server, clients: int, run_id: int
) -> dict[str, float]:
    """Connect `clients`, have the server publish, and measure every frame's delay."""
    frames, interval = PLAN[clients]
    url = f"http://127.0.0.1:{server.port}/"
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    for start in range(0, clients, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, clients - start)
        sockets += await asyncio.gather(*(session.ws_connect(url) for _ in range(batch)))
    for _ in range(500):
        if (await server.ask(cmd="clients"))["clients"] == clients:
            break
        await asyncio.sleep(0.01)
    received: list[list[tuple[float, str]]] = [[] for _ in sockets]

    async def read(ws: aiohttp.ClientWebSocketResponse, into: list[tuple[float, str]]) -> None:
        async for message in ws:
            into.append((time.perf_counter(), message.data))

    pairs = zip(sockets, received, strict=True)
    readers = [asyncio.create_task(read(ws, into)) for ws, into in pairs]
    answer = await server.ask(cmd="run", run=run_id, frames=frames, interval=interval)
    for _ in range(200):  # the last frames may still be on their way: 10 s at most
        if sum(map(len, received)) >= clients * frames:
            break
        await asyncio.sleep(0.05)
    await asyncio.gather(*(ws.close() for ws in sockets))
    for reader in readers:
        reader.cancel()
    return summarise(received, run_id, frames, clients, answer)


def summarise(
    received: list[list[tuple[float, str]]],
    run_id: int,
    frames: int,
    clients: int,
    answer: dict[str, Any],
) -> dict[str, float]:
    delays: list[float] = []
    counted = 0
    for got in received:
        for at, data in got:
            params = json.loads(data)["params"]
            if params.get("run") != run_id:
                continue  # the hub's full frame for a newcomer, from the previous run
            counted += 1
            if params["seq"] >= WARMUP:
                delays.append((at - params["time"]) * 1000)
    cuts = statistics.quantiles(delays, n=100, method="inclusive")
    return {
        "p50": cuts[49],
        "p99": cuts[98],
        "max": max(delays),
        "cpu_us": answer["cpu_s"] / frames * 1e6,
        "lost": clients * frames - counted,
        "dropped": answer["dropped"],
    }


def raise_file_limit(wanted: int = 8192) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def clients_side() -> dict[tuple[int, str], dict[str, float]]:
    """Every configuration ROUNDS times, the servers' order alternating; the best p99 kept
    (as bench_hit keeps the best round), to damp a shared machine's noise."""
    servers = {SERVERS[0]: Server("bare"), SERVERS[1]: Server("hub")}
    results: dict[tuple[int, str], dict[str, float]] = {}
    run_id = 0
    gc.disable()  # no collection pauses in the clients' process, the measuring instrument
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for round_number in range(ROUNDS):
                order = list(servers.items())[:: 1 if round_number % 2 == 0 else -1]
                for clients in PLAN:
                    for name, server in order:
                        run_id += 1
                        row = await measure(session, server, clients, run_id)
                        gc.collect()
                        best = results.get((clients, name))
                        if best is None or row["p99"] < best["p99"]:
                            results[clients, name] = row
    finally:
        gc.enable()
        for server in servers.values():
            server.stop()
    return {(clients, name): results[clients, name] for clients in PLAN for name in SERVERS}


def print_table(results: dict[tuple[int, str], dict[str, float]], loop: str) -> float:
    print(
        f"\nLive-feed fan-out: server and clients in separate processes on loopback, {loop}, "
        f"{os.cpu_count()} cores; delay from publish to receipt; best of {ROUNDS} rounds\n"
    )
    print(
        "| clients | server | frames | p50 ms | p99 ms | max ms | server CPU µs/frame "
        "| CPU µs/frame/client | lost | p99 vs bare |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratio = 0.0
    for (clients, name), row in results.items():
        floor = results[clients, SERVERS[0]]["p99"]
        ratio = row["p99"] / floor
        frames = PLAN[clients][0] - WARMUP
        print(
            f"| {clients} | {name} | {frames} | {row['p50']:.2f} | {row['p99']:.2f} "
            f"| {row['max']:.2f} | {row['cpu_us']:.0f} | {row['cpu_us'] / clients:.1f} "
            f"| {row['lost']:.0f} | {ratio:.2f}x |"
        )
    return ratio


def event_loop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    uvloop.install()
    return "uvloop"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        event_loop()
        asyncio.run(serve(sys.argv[2]))
        return 0
    if "CLOCK_MONOTONIC" not in time.get_clock_info("perf_counter").implementation:
        sys.exit("bench: needs a perf_counter shared by processes (CLOCK_MONOTONIC, Linux)")
    if raise_file_limit() < 2 * max(PLAN) + 100:
        sys.exit("bench: cannot open enough sockets (RLIMIT_NOFILE)")
    loop = event_loop()
    results = asyncio.run(clients_side())
    ratio = print_table(results, loop)
    print(
        f"\nbench: LiveHub p99 at {max(PLAN)} clients is {ratio:.2f}x the bare broadcast "
        f"(goal: within {GOAL}x)"
    )
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
