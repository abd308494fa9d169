"""The command line as users run it: demo serves and stops cleanly; check diagnoses."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support import BridgeFactory, Sim, free_port


async def get_json(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, json.loads(await response.read())


async def test_demo_serves_live_devicelist_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "demo",
        "--listen",
        f"127.0.0.1:{port}",
        "--latency",
        "0.2",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        status: dict[str, object] = {}
        for _ in range(200):  # bounded: up to ~20 s for start-up and the warm-up fetch
            try:
                _code, status = await get_json(f"{base}/health")
                if status.get("status") == "ok":
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        assert status.get("status") == "ok"
        code, document = await get_json(f"{base}/cgi-bin/dl_cgi?Command=DeviceList")
        assert code == 200
        devices = document["devices"]
        assert isinstance(devices, list)
        assert sum(device["DEVICE_TYPE"] == "Inverter" for device in devices) == 12
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0
    text = output.decode()
    assert f"{base}/cgi-bin/dl_cgi?Command=DeviceList" in text
    assert "shutting down" in text


async def run_check(
    tmp_path: Path, listen: str, upstream: str, *wrapper: str, flags: tuple[str, ...] = ()
) -> tuple[int | None, list[str]]:
    """Run `pvs-bridge check` (under `wrapper`, e.g. unshare) with a config naming these."""
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\nlisten = ["{listen}"]\n[upstream]\nurl = "{upstream}"\n')
    process = await asyncio.create_subprocess_exec(
        *wrapper,
        sys.executable,
        "-m",
        "bridge",
        "check",
        "--config",
        str(config),
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, output.decode().splitlines()


async def test_check_reports_each_fact_and_reaches_the_pvs(
    simulator: Sim, start_bridge: BridgeFactory, tmp_path: Path
) -> None:
    bridge = await start_bridge(simulator.url)
    returncode, lines = await run_check(tmp_path, f"127.0.0.1:{bridge.port}", simulator.url)
    pvs_line = [line for line in lines if line.startswith("ok   PVS at")]
    assert len(pvs_line) == 1 and "PVS6" in pvs_line[0], lines
    assert "through the bridge" in pvs_line[0]
    assert any(f"bridge at http://127.0.0.1:{bridge.port}: status" in line for line in lines)
    assert any("PVS-side interface" in line for line in lines)
    assert lines[-1].startswith("check: ")
    # This machine has no interface on 172.27.x, so check must say so and fail.
    assert returncode == (0 if lines[-1] == "check: all good" else 1)
    assert await simulator.count("supervisor/info") == 1
    # It asked through the running bridge (its gate), not beside it.
    health = await (await bridge.get("/health")).json()
    assert health["upstream"]["calls"].get("supervisor/info") == 1


async def test_check_asks_the_bridge_given_by_flag(
    simulator: Sim, start_bridge: BridgeFactory, tmp_path: Path
) -> None:
    # The config names a port nothing listens on; --bridge points at the real one.
    bridge = await start_bridge(simulator.url)
    base = f"http://127.0.0.1:{bridge.port}"
    _code, lines = await run_check(
        tmp_path, f"127.0.0.1:{free_port()}", simulator.url, flags=("--bridge", base + "/")
    )
    assert any(line.startswith(f"ok   bridge at {base}: status") for line in lines), lines
    assert any("through the bridge" in line for line in lines if "PVS at" in line), lines
    health = await (await bridge.get("/health")).json()
    assert health["upstream"]["calls"].get("supervisor/info") == 1


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to run check in an empty network namespace",
)
async def test_check_never_sends_a_pvs_request_out_the_default_route(tmp_path: Path) -> None:
    # No interface on 172.27.x (cable out): the request would follow the default route to
    # the home router. Run inside a new, empty network namespace so that nothing can leave
    # even if check tried.
    returncode, lines = await run_check(
        tmp_path, "127.0.0.1:9", "http://172.27.153.1", "unshare", "--net"
    )
    assert returncode == 1, lines
    probe = [line for line in lines if "PVS at http://172.27.153.1" in line]
    assert len(probe) == 1, lines
    assert probe[0].startswith("FAIL") and "not probed" in probe[0], lines
    assert "default route" in probe[0]
