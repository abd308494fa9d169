"""Cache-hit benchmark: the bridge beside a bare aiohttp handler serving the same bytes.

Both run as separate processes on loopback with the same event loop (uvloop when
installed), one after the other, loaded by wrk (installed with apt-get when missing and
root). Each is measured ROUNDS times and the best round kept, to damp a shared
machine's noise. Prints a Markdown table; exits 1 if the bridge falls below 70 %.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROUNDS = 3
DURATION_S = 6
CONNECTIONS = 32
TARGET = "/cgi-bin/dl_cgi?Command=DeviceList"
FLOOR_SHARE = 0.70
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, limit_s: float = 20.0) -> bytes:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL
        )
        found = shutil.which("wrk")
    if not found:
        sys.exit("bench: wrk is needed (apt-get install wrk)")
    return found


def run_wrk(wrk: str, url: str) -> dict[str, float]:
    output = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=DURATION_S + 30,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for percentile in ("50", "90", "99"):
        match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            result[f"p{percentile}"] = (
                value / 1000 if unit == "us" else value * (1000 if unit == "s" else 1)
            )
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["errors"] = float(non2xx.group(1)) if non2xx else 0.0
    return result


def main() -> int:
    wrk = ensure_wrk()
    python = sys.executable
    sim_port, bridge_port, bare_port = free_port(), free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    try:
        processes.append(
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "bridge",
                    "simulate",
                    "--listen",
                    f"127.0.0.1:{sim_port}",
                    "--latency",
                    "0.5",
                ],
                **quiet,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "bridge",
                    "serve",
                    "--listen",
                    f"127.0.0.1:{bridge_port}",
                    "--upstream",
                    f"http://127.0.0.1:{sim_port}",
                    "--rate-limit",
                    "off",
                    "--refresh",
                    "3600",
                ],
                env={
                    **os.environ,
                    "PVS_BRIDGE_SERVER_SUMMARY_INTERVAL": "0",
                    "PVS_BRIDGE_SERVER_LISTEN_WS": "",
                    "PVS_BRIDGE_UPSTREAM_WS_URL": "off",
                },
                **quiet,
            )
        )
        body = wait_until_serving(f"http://127.0.0.1:{bridge_port}{TARGET}")
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            handle.write(body)
        processes.append(
            subprocess.Popen(
                [python, str(HERE / "bare_server.py"), str(bare_port), handle.name], **quiet
            )
        )
        assert wait_until_serving(f"http://127.0.0.1:{bare_port}{TARGET}") == body
        best: dict[str, dict[str, float]] = {}
        for _ in range(ROUNDS):
            for name, port in (
                ("bare aiohttp handler", bare_port),
                ("pvs-bridge (cache hit)", bridge_port),
            ):
                measured = run_wrk(wrk, f"http://127.0.0.1:{port}{TARGET}")
                if name not in best or measured["rps"] > best[name]["rps"]:
                    best[name] = measured
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
    floor = best["bare aiohttp handler"]["rps"]
    print(
        f"\nCache-hit benchmark: {len(body)} byte DeviceList, wrk -t1 -c{CONNECTIONS} "
        f"-d{DURATION_S}s, best of {ROUNDS}, {os.cpu_count()} cores\n"
    )
    print("| server | requests/s | p50 ms | p90 ms | p99 ms | non-2xx | share of floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in best.items():
        print(
            f"| {name} | {row['rps']:.0f} | {row.get('p50', 0):.2f} | {row.get('p90', 0):.2f} "
            f"| {row.get('p99', 0):.2f} | {row['errors']:.0f} | {row['rps'] / floor:.0%} |"
        )
    share = best["pvs-bridge (cache hit)"]["rps"] / floor
    print(f"\nbench: bridge reaches {share:.0%} of the bare handler (target {FLOOR_SHARE:.0%})")
    return 0 if share >= FLOOR_SHARE else 1


if __name__ == "__main__":
    sys.exit(main())
