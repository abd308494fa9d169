"""2025 API on the client side: /auth, /vars, client sessions, shared upstream queries."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import aiohttp
import pytest

from bridge.clock import FakeClock
from bridge.web.policy import PolicyError
from bridge.web.vars_query import parse_vars
from tests.support import (
    FAST_BACKOFF,
    UNREACHABLE,
    BridgeFactory,
    Client,
    ServeFactory,
    SimulatorFactory,
    bridge_config,
    pvs_2025,
)

GOOD = "basic " + base64.b64encode(b"ssm_owner:ABCDE").decode()  # serial ends in ABCDE
BAD = "Basic " + base64.b64encode(b"ssm_owner:WRONG").decode()


@pytest.mark.parametrize(
    ("raw", "target"),
    [
        ("name=/sys/info/uptime", "/vars?name=/sys/info/uptime"),
        (
            "name=/sys/info/a,/sys/info/b,/sys/info/a&fmt=obj",
            "/vars?name=/sys/info/a,/sys/info/b&fmt=obj",
        ),
        ("fmt=list&match=inverter", "/vars?match=inverter&fmt=list"),
        ("match=%2Fsys%2Finfo%2F", "/vars?match=/sys/info/"),
        ("match=meter&cache=mdata", "/vars?match=meter"),
    ],
)
def test_canonical_query(raw: str, target: str) -> None:
    assert parse_vars(raw).target() == target


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "name=a",
        "name=/sys/x&match=y",
        "fmt=xml&match=a",
        "match=a&match=b",
        "host=evil&match=a",
        "match=a;reboot",
        "cache=../x",
        "match=" + "a" * 1100,
    ],
)
def test_refused_queries(raw: str) -> None:
    with pytest.raises(PolicyError):
        parse_vars(raw)


async def login(client: Client, header: str = GOOD) -> aiohttp.ClientResponse:
    return await client.get("/auth?login", headers={"Authorization": header})


async def test_client_session_login_logout_and_pre_login_names(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF)
    serial = await client.post("/vars", data="name=/sys/info/serialnum")
    assert serial.status == 200  # readable before login, as on the PVS
    assert "ZT01234567890ABCDE" in await serial.text()
    assert (await client.post("/vars", data="match=inverter")).status == 401
    assert (await login(client, BAD)).status == 401
    assert (await login(client, "Bearer x")).status == 401
    answer = await login(client)
    assert answer.status == 200
    token = (await answer.json())["session"]
    assert len(token) == 64
    assert client.session.cookie_jar.filter_cookies(client.make_url("/"))["session"].value == token
    found = await client.post("/vars", data="match=/sys/devices/inverter/0/&fmt=obj")
    assert found.status == 200
    assert "/sys/devices/inverter/0/p3phsumKw" in json.loads(await found.read())
    assert (await client.post("/vars", data="name=/sys/nothing/here")).status == 400
    assert (await client.get("/auth?logout")).status == 200
    assert (await client.post("/vars", data="match=inverter")).status == 401
    stats = await sim.stats()
    assert stats["logins"] == 1  # the bridge's own login; client logins stay local


async def test_pre_login_names_need_no_upstream_session(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # The PVS serves these without a session; so must the bridge, even while its own login
    # is refused (a wrong upstream.password), and without logging in for them at all.
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF, upstream={"password": "WRONG"})
    for name in ("serialnum", "ssid", "lmac"):
        answer = await client.post("/vars", data=f"name=/sys/info/{name}")
        assert answer.status == 200, name
        assert f"/sys/info/{name}" in await answer.text()
    stats = await sim.stats()
    assert stats["logins"] == 0
    assert stats["login_failures"] == 0


async def test_trusted_lan_takes_any_credentials(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF, clients={"trusted_lan": True})
    assert (await login(client, BAD)).status == 200
    assert (await client.get("/vars?match=livedata")).status == 200


async def test_client_session_expires_and_relogin_works(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF, clock=clock, clients={"session_ttl": 60.0})
    await login(client)
    assert (await client.get("/vars?match=livedata")).status == 200
    await clock.advance(61.0)
    assert (await client.get("/vars?match=livedata")).status == 401
    await login(client)
    assert (await client.get("/vars?match=livedata")).status == 200


async def test_set_is_refused_and_cache_ids_are_per_client(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF)
    await login(client)
    refused = await client.post("/vars", data="set=/sys/info/ssid=evil")
    assert refused.status == 403
    assert "writes are disabled" in (await refused.json())["message"]
    first = await client.post("/vars", data="match=/sys/devices/meter/&cache=mdata&fmt=obj")
    again = await client.post("/vars", data="cache=mdata")
    assert json.loads(await first.read()).keys() == json.loads(await again.read()).keys()
    assert (await client.post("/vars", data="cache=other")).status == 400
    queries = (await sim.stats())["vars_queries"]
    assert not any("cache" in query or "set" in query for query in queries)


async def reference_client(
    base: str, rounds: int, step: asyncio.Event, done: asyncio.Queue[int]
) -> None:
    """The reference library's flow: pre-login reads, Basic login, POST /vars, re-login on 401."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:

        async def post(body: str) -> aiohttp.ClientResponse:
            answer = await session.post(
                f"{base}/vars", data=body, headers={"Content-Type": "text/plain"}, ssl=False
            )
            await answer.read()
            return answer

        serial = await post("name=/sys/info/serialnum")
        value = json.loads(await serial.read())["values"][0]["value"]
        header = "basic " + base64.b64encode(f"ssm_owner:{value[-5:]}".encode()).decode()
        errors = 0
        for _ in range(rounds):
            for body in (
                "name=/sys/info/uptime",
                "match=inverter",
                "match=meter",
                "match=livedata",
            ):
                answer = await post(body)
                if answer.status in (400, 401, 500):
                    login_answer = await session.get(
                        f"{base}/auth?login", headers={"Authorization": header}, ssl=False
                    )
                    assert login_answer.status == 200
                    answer = await post(body)
                errors += answer.status != 200
            await done.put(errors)
            await step.wait()


async def test_five_reference_clients_over_tls_share_each_query(
    start_simulator: SimulatorFactory, serve_bridge: ServeFactory, tmp_path: Path
) -> None:
    """Done-when 2: five clients, HTTPS listener, one upstream call per query per interval."""
    clock = FakeClock()
    rounds, clients = 6, 5
    sim = await start_simulator(clock, **pvs_2025())
    bridge = await serve_bridge(
        sim.url, FAST_BACKOFF, clock=clock, tls_dir=tmp_path, upstream={"vars_interval": 5.0}
    )
    base = bridge.url
    assert base.startswith("https://")
    done: asyncio.Queue[int] = asyncio.Queue()
    step = asyncio.Event()
    tasks = [
        asyncio.create_task(reference_client(base, rounds, step, done)) for _ in range(clients)
    ]
    errors = 0
    for _round in range(rounds):
        for _ in range(clients):
            errors += await asyncio.wait_for(done.get(), 30)
        await clock.advance(5.0)  # one interval between rounds
        step.set()
        step.clear()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await bridge.close()
    assert errors == 0
    queries = (await sim.stats())["vars_queries"]
    for body in ("match=inverter", "match=meter", "match=livedata"):
        assert 1 <= queries[body] <= rounds, (body, queries)
    # Without sharing it would be clients x rounds = 30 per query. The uptime is held
    # by the device read (/sys/info/*): answered from memory, it costs nothing more.
    assert "name=/sys/info/uptime" not in queries
    assert 1 <= queries["match=/sys/info/&fmt=obj"] <= rounds


async def test_tls_listener_creates_and_reuses_its_certificate(tmp_path: Path) -> None:
    from bridge.host.tls import CERT_NAME, KEY_NAME, context_from_config

    cfg = bridge_config(UNREACHABLE, server={"state_dir": str(tmp_path)})
    context_from_config(cfg.server)
    cert, key = tmp_path / CERT_NAME, tmp_path / KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600
    first = cert.read_bytes()
    context_from_config(cfg.server)
    assert cert.read_bytes() == first  # reused, not replaced, on the next start


async def test_set_with_writes_enabled_needs_the_token_and_is_sent_once_uncached(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    token = "a-write-token-of-length"
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF, writes={"enabled": True, "token": token})
    await login(client)
    write = "set=/sys/info/ssid=Garage"
    anonymous = await client.post("/vars", data=write)
    assert anonymous.status == 401
    assert (await sim.stats()).get("writes", 0) == 0
    bad_shape = await client.post(
        "/vars", data="set=ssid", headers={"Authorization": f"Bearer {token}"}
    )
    assert bad_shape.status == 400
    for _ in range(2):  # never cached: each write reaches the PVS, once
        done = await client.post("/vars", data=write, headers={"Authorization": f"Bearer {token}"})
        assert done.status == 200
        assert done.headers["X-Cache"] == "BYPASS"
        assert json.loads(await done.read())["values"] == [
            {"name": "/sys/info/ssid", "value": "Garage"}
        ]
    assert (await sim.stats())["writes"] == 2
    seen = await client.post("/vars", data="name=/sys/info/ssid&fmt=obj")
    assert json.loads(await seen.read()) == {"/sys/info/ssid": "Garage"}


async def test_a_query_that_matches_nothing_is_shared_like_any_other(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF, clock=clock)
    await login(client)
    states = []
    for _ in range(5):
        answer = await client.post("/vars", data="name=/sys/nothing/here")
        assert answer.status == 400  # as the PVS said it
        states.append(answer.headers["X-Cache"])
    assert states == ["MISS", "HIT", "HIT", "HIT", "HIT"]
    queries = (await sim.stats())["vars_queries"]
    assert queries.get("name=/sys/nothing/here") == 1
