"""The bridge's own PVS password and sessions never reach a client, a log or a metric."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest

from tests.support import DEVICE_LIST, BridgeFactory, SimulatorFactory

CONFIGURED = "NOT-THE-PVS-PASSWORD-7731"  # recognisable, and wrong: the login is refused
GOOD = "basic " + base64.b64encode(b"ssm_owner:ABCDE").decode()  # the simulator's


async def test_a_configured_password_and_the_sessions_never_show(
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = await start_simulator(firmware="2025", inverters=2)
    bridge = await start_bridge(
        sim.url,
        upstream={"password": CONFIGURED, "backoff_initial": 0.01, "backoff_max": 0.05},
        clients={"trusted_lan": True},  # a client session to look for in the logs
    )
    seen: list[str] = []
    refused = await bridge.get(DEVICE_LIST)  # the bridge logs in with the wrong password
    seen.append(await refused.text())
    assert refused.status >= 500
    login = await bridge.get("/auth?login", headers={"Authorization": GOOD})
    seen.append(await login.text())
    client_session = (await login.json()).get("session", "")
    await asyncio.sleep(0.1)  # past the short backoff: one more try
    for path in ("/health", "/metrics", "/", "/vars?name=/sys/info/serialnum", DEVICE_LIST):
        seen.append(await (await bridge.get(path)).text())
    everything = "\n".join(seen) + caplog.text
    assert CONFIGURED not in everything
    assert base64.b64encode(f"ssm_owner:{CONFIGURED}".encode()).decode() not in everything
    assert "upstream.password" in everything  # the problem is named, the value never
    assert client_session and client_session not in caplog.text
