"""The 2025 client API on any firmware, the PVS's secrets kept in, sessions one client
cannot flood (issue 10, parts 1, 3, 4 and 6).

Real sockets and the simulator throughout; pypvs (the reference 2025 client) runs its own
gateway flow against the bridge over HTTPS.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.clock import FakeClock
from bridge.simulator import legacy
from bridge.simulator.firmware2025 import SIMULATED_WIFI_KEY
from bridge.web.client_sessions import ClientSessions
from bridge.web.keys import DEVICES, VARS_CACHE
from tests.support import (
    DEVICE_LIST,
    FAST_BACKOFF,
    FIXTURES,
    BridgeFactory,
    Client,
    ServeFactory,
    Sim,
    SimulatorFactory,
    pvs_2025,
)

SERIAL = "ZT01234567890ABCDE"  # the simulator's: the password is ABCDE
NOTHING = {"status": 400, "error": "Bad Request", "path": "/vars"}


def basic(password: str) -> str:
    return "basic " + base64.b64encode(f"ssm_owner:{password}".encode()).decode()


async def login(client: Client, password: str = "ABCDE") -> str:
    answer = await client.get("/auth?login", headers={"Authorization": basic(password)})
    assert answer.status == 200, await answer.text()
    token: str = (await answer.json())["session"]
    return token


async def ask(client: Client, query: str, *, post: bool = True) -> tuple[int, Any, str]:
    """(status, JSON body, raw text) of one /vars query, POSTed as pypvs does or as a GET."""
    if post:
        answer = await client.post("/vars", data=query, headers={"Content-Type": "text/plain"})
    else:
        answer = await client.get("/vars?" + query)
    text = await answer.text()
    return answer.status, json.loads(text), text


def fields_by_kind(names: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name in names:
        parts = name.split("/")
        if name.startswith("/sys/devices/"):
            found.setdefault(parts[3], set()).add(parts[5])
    return found


# -- pypvs, the reference client, on either firmware -------------------------------------


def expected_devices(
    sim: Sim,
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """Per serial (power kW, lifetime kWh) of inverters and meters, as the simulator has them."""
    devices = legacy.device_list(sim.simulator.site, sim.simulator.options.swver)["devices"]
    inverters = {
        d["SERIAL"]: (float(d["p_3phsum_kw"]), float(d["ltea_3phsum_kwh"]))
        for d in devices
        if d["DEVICE_TYPE"] == "Inverter"
    }
    meters = {
        d["SERIAL"]: (float(d["p_3phsum_kw"]), float(d["net_ltea_3phsum_kwh"]))
        for d in devices
        if d["DEVICE_TYPE"] == "Power Meter"
    }
    return inverters, meters


@pytest.mark.parametrize("firmware", ["legacy", "2025"])
async def test_pypvs_reads_every_inverter_and_meter_through_the_bridge(
    start_simulator: SimulatorFactory,
    serve_bridge: ServeFactory,
    tmp_path: Path,
    firmware: str,
) -> None:
    from pypvs import PVS

    clock = FakeClock()  # frozen: the simulator's values are the same at every read
    sim = await start_simulator(clock, firmware=firmware, inverters=5)
    bridge = await serve_bridge(sim.url, FAST_BACKOFF, clock=clock, tls_dir=tmp_path)
    async with aiohttp.ClientSession() as session:
        pvs = PVS(session=session, host=f"127.0.0.1:{bridge.port}")  # pypvs says https://
        await pvs.discover()  # serial, ssid and lmac: read before any login
        assert pvs.serial_number == SERIAL
        await pvs.setup(auth_password=SERIAL[-5:])
        data = await pvs.update()
    inverters, meters = expected_devices(sim)
    assert len(inverters) == 5 and len(meters) == 2
    got_inverters = {sn: (i.last_report_kw, i.lte_kwh) for sn, i in data.inverters.items()}
    got_meters = {sn: (m.power_3ph_kw, m.net_lte_kwh) for sn, m in data.meters.items()}
    assert got_inverters == inverters
    assert got_meters == meters
    assert data.gateway.pvs_type == "PVS6"
    if firmware == "legacy":
        stats = await sim.stats()
        assert set(stats["requests"]) <= {"DeviceList", "supervisor/info"}
        assert stats["requests"]["DeviceList"] == 1  # every answer from the one read


# -- the 2025 API in front of a legacy PVS ---------------------------------------------


@contextlib.asynccontextmanager
async def fixture_pvs() -> AsyncIterator[str]:
    """A legacy PVS that answers DeviceList with the shared fixture (nothing else)."""
    body = (FIXTURES / "legacy" / "DeviceList.json").read_bytes()

    async def dl_cgi(request: web.Request) -> web.Response:
        if request.query.get("Command") == "DeviceList":
            return web.Response(body=body, content_type="application/json")
        return web.Response(status=404, text="404 - Not Found")

    app = web.Application()
    app.router.add_get("/cgi-bin/dl_cgi", dl_cgi)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_legacy_fixture_as_varserver_has_the_shapes_of_the_2025_firmware(
    start_bridge: BridgeFactory,
) -> None:
    varserver: dict[str, str] = json.loads((FIXTURES / "varserver" / "vars-obj.json").read_text())
    async with fixture_pvs() as url:
        client = await start_bridge(url, FAST_BACKOFF, upstream={"firmware": "legacy"})
        for name in ("serialnum", "ssid", "lmac"):  # before any login, as on the PVS
            status, _, _ = await ask(client, f"name=/sys/info/{name}")
            assert status == 200, name
        assert (await ask(client, "match=/sys/devices/"))[0] == 401  # the rest needs one
        await login(client, "BCDEF")  # the fixture's serial ends in ABCDEF
        status, ours, _ = await ask(client, "match=/sys/&fmt=obj")
        assert status == 200
        status, listed, _ = await ask(client, "match=/sys/devices/inverter/")
        assert status == 200
    theirs = fields_by_kind(varserver)
    assert fields_by_kind(ours) == theirs  # the same fields per device kind
    info = {name for name in ours if name.startswith("/sys/info/")}
    assert info == {name for name in varserver if name.startswith("/sys/info/")}
    assert ours["/sys/info/serialnum"] == "ZT01234567890ABCDEF"
    # the fixture's 3 inverters, each with every field the 2025 firmware lists
    assert listed["count"] == len(listed["values"]) == 3 * len(theirs["inverter"])
    assert {"/sys/livedata/pv_p", "/sys/livedata/net_p"} <= set(ours)


async def test_legacy_vars_come_from_the_device_list_with_its_age_and_no_pvs_request(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    # An old PVS without supervisor/info: the password comes from the device list's serial.
    sim = await start_simulator(clock, inverters=3, missing_paths=("supervisor/info",))
    client = await start_bridge(sim.url, FAST_BACKOFF, clock=clock, cache={"refresh": 30.0})
    assert (
        await client.get("/auth?login", headers={"Authorization": basic("WRONG")})
    ).status == 401
    await login(client)
    await clock.advance(4.0)
    listed = await client.get(DEVICE_LIST)
    varsed = await client.post("/vars", data="name=/sys/info/uptime,/sys/devices/meter/1/p3phsumKw")
    assert varsed.status == 200
    assert varsed.headers["X-Cache"] == listed.headers["X-Cache"] == "HIT"
    assert varsed.headers["Age"] == listed.headers["Age"] == "4"
    document = json.loads(await varsed.read())
    assert document["count"] == 2  # the list form unless fmt=obj, as on the PVS
    for query in ("name=/sys/pvs/flashwear_type_b", "match=/sys/telemetryws/", "match=nothing"):
        status, body, _ = await ask(client, query)
        assert (status, body) == (400, NOTHING), query
    status, body, _ = await ask(client, "match=inverter&cache=inv&fmt=obj")
    assert status == 200 and len(fields_by_kind(body)["inverter"]) == 12  # sn, model, time + 9
    assert (await ask(client, "cache=inv"))[1] == body
    stats = await sim.stats()
    assert set(stats["requests"]) <= {"DeviceList", "supervisor/info"}
    assert stats["requests"]["DeviceList"] == 1


async def test_legacy_set_is_refused_as_before(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    token = "a-write-token-of-length"
    sim = await start_simulator()
    client = await start_bridge(sim.url, FAST_BACKOFF, writes={"enabled": True, "token": token})
    await login(client)
    refused = await client.post(
        "/vars", data="set=/sys/info/ssid=x", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status == 404
    assert (await refused.json())["error"] == "not_on_this_firmware"


# -- the PVS's secrets stay in ---------------------------------------------------------


SECRET_QUERIES = [
    "name=/sys/info/wpa_key",
    "name=/sys/info/WPA_KEY",
    "name=/sys/info/wpa_key&fmt=obj",
    "match=wpa_key",
    "match=/sys/info/wpa_key&fmt=obj",
    "match=key",
]
# Queries that may select it among others: answered, without it.
WIDER_QUERIES = [
    "match=/sys/info/",  # held by the device read
    "match=/sys/info/&fmt=obj",
    "match=/sys/info",  # not held: asked of the PVS, the key dropped before it is cached
    "match=/sys/info&fmt=obj",
    "match=/&fmt=obj",
    "match=/",
    "match=wpa",
    "name=/sys/info/serialnum,/sys/info/wpa_key",
    "name=/sys/pvs/nothing,/sys/info/wpa_key,/sys/info/ssid&fmt=obj",
]


async def check_secret_queries(client: Client, bodies: list[str]) -> None:
    for query in SECRET_QUERIES:
        for post in (True, False):
            status, body, text = await ask(client, query, post=post)
            assert (status, body) == (400, NOTHING), query
            bodies.append(text)
    for query in WIDER_QUERIES:
        status, body, text = await ask(client, query)
        bodies.append(text)
        if query == "match=wpa":
            assert (status, body) == (400, NOTHING)
            continue
        assert status == 200, query
        names = body if "fmt=obj" in query else [item["name"] for item in body["values"]]
        assert names and not any("wpa_key" in name for name in names), query
        if "values" in body:
            assert body["count"] == len(body["values"])


async def check_cache_ids(client: Client, bodies: list[str]) -> None:
    for define in ("name=/sys/info/wpa_key&cache=w", "match=wpa_key&cache=w"):
        status, body, text = await ask(client, define)
        assert (status, body) == (400, NOTHING)
        status, body, text = await ask(client, "cache=w")
        assert (status, body) == (400, NOTHING)
        bodies.append(text)
    status, body, text = await ask(client, "match=/sys/info&cache=i&fmt=obj")
    again = await ask(client, "cache=i")
    assert status == 200 and again[1] == body and "/sys/info/wpa_key" not in body
    bodies.extend([text, again[2]])


@pytest.mark.parametrize("trusted_lan", [False, True])
async def test_the_wifi_key_never_gets_through_on_2025_firmware(
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
    trusted_lan: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "a-write-token-of-length"
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(
        sim.url,
        FAST_BACKOFF,
        clients={"trusted_lan": trusted_lan},
        writes={"enabled": True, "token": token},
    )
    # The PVS itself lets any logged-in client read it: the bridge must not.
    assert SIMULATED_WIFI_KEY in await direct_read(sim, "name=/sys/info/wpa_key")
    await login(client)
    bodies: list[str] = []
    await check_secret_queries(client, bodies)
    await check_cache_ids(client, bodies)
    for assignment in ("set=/sys/info/wpa_key=x", "set=/sys/info/Wpa_Key=x"):
        refused = await client.post(
            "/vars", data=assignment, headers={"Authorization": f"Bearer {token}"}
        )
        assert refused.status == 403
        assert (await refused.json())["error"] == "hidden_variable"
    for page in ("/health", "/metrics", "/", DEVICE_LIST):
        bodies.append(await (await client.get(page)).text())
    assert not any(SIMULATED_WIFI_KEY in body for body in bodies)
    assert SIMULATED_WIFI_KEY not in caplog.text
    stats = await sim.stats()
    asked = [query for query in stats["vars_queries"] if "key" in query.lower()]
    assert asked == ["name=/sys/info/wpa_key"]  # only this test's own direct read
    assert stats.get("writes", 0) == 0
    # Held in memory neither in the device read nor in the shared /vars cache.
    latest = client.app[DEVICES].latest
    assert latest is not None and latest.variables is not None
    assert not any("wpa_key" in name for name in latest.variables)
    for target in ("/vars?match=/sys/info", "/vars?match=/&fmt=obj", "/vars?match=wpa"):
        held = client.app[VARS_CACHE].peek(target)
        assert held is not None and SIMULATED_WIFI_KEY.encode() not in held.body, target


async def direct_read(sim: Sim, query: str) -> str:
    """Log in to the simulated PVS itself and read `query` (what a client could without
    the bridge)."""
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": basic("ABCDE")}
        async with session.get(f"{sim.url}/auth?login", headers=auth) as answer:
            token = (await answer.json())["session"]
        cookie = {"Cookie": f"session={token}"}
        async with session.post(f"{sim.url}/vars", data=query, headers=cookie) as answer:
            return await answer.text()


async def test_hidden_vars_apply_on_legacy_firmware_too(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator()
    client = await start_bridge(
        sim.url, FAST_BACKOFF, clients={"hidden_vars": ["/sys/info/wpa_key", "mac"]}
    )
    await login(client)
    for query in ("name=/sys/info/wpa_key", "name=/sys/info/lmac", "match=mac"):
        assert (await ask(client, query))[:2] == (400, NOTHING), query
    status, body, _ = await ask(client, "match=/sys/info/&fmt=obj")
    assert status == 200 and "/sys/info/serialnum" in body and "/sys/info/lmac" not in body


# -- client sessions one client cannot flood -------------------------------------------


async def test_300_logins_from_one_address_leave_another_addresss_session_valid(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator()
    client = await start_bridge(
        sim.url, FAST_BACKOFF, clients={"max_sessions": 64, "max_sessions_per_address": 8}
    )
    login_url = client.make_url("/auth?login")
    vars_url = client.make_url("/vars")
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other) as elsewhere:
        async with elsewhere.get(login_url, headers={"Authorization": basic("ABCDE")}) as answer:
            assert answer.status == 200
            kept = (await answer.json())["session"]
        tokens = [await login(client) for _ in range(300)]  # from 127.0.0.1

        async def status_with(session: aiohttp.ClientSession | Client, token: str) -> int:
            url = vars_url if isinstance(session, aiohttp.ClientSession) else "/vars"
            cookie = {"Cookie": f"session={token}"}
            async with session.post(url, data="match=livedata", headers=cookie) as answer:
                return answer.status

        assert await status_with(elsewhere, kept) == 200
    client.session.cookie_jar.clear()
    assert [await status_with(client, token) for token in tokens[-8:]] == [200] * 8
    assert [await status_with(client, token) for token in tokens[:3]] == [401] * 3
    described = (await (await client.get("/health")).json())["clients"]
    assert described["client_sessions"] == 9
    assert described["client_addresses"] == 2
    assert described["client_sessions_replaced"] == 300 - 8


def test_client_sessions_stay_bounded_across_many_addresses() -> None:
    clock = FakeClock()
    sessions = ClientSessions(clock, ttl=60.0, max_sessions=16, max_per_address=2)
    for n in range(5000):
        sessions.create(f"10.0.{n // 250}.{n % 250}")
        assert sessions.indexed_addresses <= 17
    assert sessions.live == 16  # the global cap stays
    first = sessions.create("192.0.2.1")
    second = sessions.create("192.0.2.1")
    third = sessions.create("192.0.2.1")
    assert sessions.get(first) is None
    assert sessions.get(second) is not None and sessions.get(third) is not None
