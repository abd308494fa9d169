"""Browsers and DNS rebinding: Host names on the session API and writes, CORS per route group."""

from __future__ import annotations

import base64
import socket

import pytest

from bridge.web.hosts import AllowedHosts, is_address
from tests.support import (
    DEVICE_LIST,
    FAST_BACKOFF,
    BridgeFactory,
    Sim,
    SimulatorFactory,
    idle,
    pvs_2025,
)

GOOD = "basic " + base64.b64encode(b"ssm_owner:ABCDE").decode()  # serial ends in ABCDE
FOREIGN = {"Host": "evil.example"}
TOKEN = "s3cret-token-for-writes"
WRITE = "/cgi-bin/dl_cgi?Command=GridProfileRefresh"


@pytest.mark.parametrize(
    "host",
    [
        None,  # HTTP/1.0 without Host: no browser
        "127.0.0.1",
        "192.168.1.50:8080",
        "[::1]",
        "[fe80::1]:80",
        "localhost",
        "LocalHost:8080",
        "localhost.",
        "sunpowerconsole.com",
        "SunPowerConsole.com.:80",
        socket.gethostname(),
        f"{socket.gethostname()}.local",
    ],
)
def test_default_names_and_address_literals_are_allowed(host: str | None) -> None:
    assert AllowedHosts.from_config(()).allows(host)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:80",
        "localhost.evil.example",
        "sunpowerconsole.com.evil.example",
        "127.0.0.1.nip.io",
        "1.2.3",
        "[::1]x",
        "[not-an-address]",
    ],
)
def test_other_names_are_refused(host: str) -> None:
    assert not AllowedHosts.from_config(()).allows(host)


def test_configured_names_replace_the_defaults() -> None:
    hosts = AllowedHosts.from_config(["Bridge.LAN."])
    assert hosts.allows("bridge.lan:8080")
    assert hosts.allows("10.0.0.2")
    assert not hosts.allows("localhost")
    assert not hosts.allows("sunpowerconsole.com")


def test_address_literals() -> None:
    assert is_address("10.1.2.3:80")
    assert is_address("[::ffff:10.1.2.3]:8080")
    assert not is_address("::1")  # IPv6 only in brackets
    assert not is_address("10.1.2.3:http")


async def test_a_foreign_host_gets_421_on_the_session_api_before_anything_happens(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    bridge = await start_bridge(sim.url, FAST_BACKOFF)
    await idle(bridge)
    before = (await sim.stats())["requests"]
    refused = [
        await bridge.get("/auth?login", headers={**FOREIGN, "Authorization": GOOD}),
        await bridge.get("/vars?name=/sys/info/serialnum", headers=FOREIGN),
        await bridge.post("/vars", data="name=/sys/info/serialnum", headers=FOREIGN),
        await bridge.get("/vars?set=/sys/telemetryws/enable=1", headers=FOREIGN),
    ]
    for response in refused:
        assert response.status == 421
        document = await response.json()
        assert document["error"] == "misdirected_request"
        assert document["status"] == 421
        assert "server.hostnames" in document["message"]
    await idle(bridge)
    assert (await sim.stats())["requests"] == before  # not one PVS request
    # The same requests by IP address (the test client's Host) or an allowed name work.
    assert (await bridge.get("/auth?login", headers={"Authorization": GOOD})).status == 200
    by_name = await bridge.post(
        "/vars", data="name=/sys/info/serialnum", headers={"Host": "localhost:80"}
    )
    assert by_name.status == 200
    assert "ZT01234567890ABCDE" in await by_name.text()


async def test_the_legacy_api_answers_any_host(simulator: Sim, start_bridge: BridgeFactory) -> None:
    bridge = await start_bridge(simulator.url)
    for target in (DEVICE_LIST, DEVICE_LIST, "/cgi-bin/dl_cgi/supervisor/info", "/health"):
        response = await bridge.get(target, headers=FOREIGN)  # a miss, then a hit
        assert response.status == 200


async def test_a_write_with_a_foreign_host_gets_421_before_reaching_the_pvs(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(simulator.url, writes={"enabled": True, "token": TOKEN})
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    refused = await bridge.get(WRITE, headers={**authorized, **FOREIGN})
    assert refused.status == 421
    assert (await refused.json())["error"] == "misdirected_request"
    assert await simulator.count("GridProfileRefresh") == 0
    # A read with the same Host is served; the write by IP address is sent.
    assert (await bridge.get(DEVICE_LIST, headers=FOREIGN)).status == 200
    sent = await bridge.get(WRITE, headers=authorized)
    assert sent.status == 200
    assert sent.headers["X-Cache"] == "BYPASS"
    assert await simulator.count("GridProfileRefresh") == 1


async def test_a_foreign_origin_gets_no_cors_on_the_session_api(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    bridge = await start_bridge(sim.url, FAST_BACKOFF)  # cors.origins "*", api_origins none
    origin = {"Origin": "http://evil.example"}
    answer = await bridge.post("/vars", data="name=/sys/info/serialnum", headers=origin)
    assert answer.status == 200
    assert "Access-Control-Allow-Origin" not in answer.headers
    preflight = await bridge.options(
        "/vars", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    auth = await bridge.options("/auth", headers={**origin, "Access-Control-Request-Method": "GET"})
    assert auth.status == 403
    # The read-only legacy API keeps cors.origins.
    devices = await bridge.get(DEVICE_LIST, headers=origin)
    assert devices.headers["Access-Control-Allow-Origin"] == "*"


async def test_listed_api_origins_get_cors_on_the_session_api(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    dashboard = "http://dashboard.lan:3000"
    bridge = await start_bridge(
        sim.url,
        FAST_BACKOFF,
        cors={"origins": ["http://ha.lan:8123"], "api_origins": [dashboard]},
    )
    answer = await bridge.get("/vars?name=/sys/info/serialnum", headers={"Origin": dashboard})
    assert answer.status == 200
    assert answer.headers["Access-Control-Allow-Origin"] == dashboard
    assert "Origin" in answer.headers["Vary"]
    preflight = await bridge.options(
        "/vars",
        headers={
            "Origin": dashboard,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == dashboard
    assert set(preflight.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST"}
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other = await bridge.get(
        "/vars?name=/sys/info/serialnum", headers={"Origin": "http://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    # Each group keeps its own list: the dashboard is not a legacy API origin here.
    legacy = await bridge.get(DEVICE_LIST, headers={"Origin": dashboard})
    assert "Access-Control-Allow-Origin" not in legacy.headers
    ha = await bridge.get(DEVICE_LIST, headers={"Origin": "http://ha.lan:8123"})
    assert ha.headers["Access-Control-Allow-Origin"] == "http://ha.lan:8123"
