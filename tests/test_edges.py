"""CORS for browsers, per-client rate limits, /health and /metrics."""

from __future__ import annotations

import asyncio

import pytest

from bridge.clock import FakeClock
from bridge.config import RateLimitConfig
from bridge.web.ratelimit import RateLimiter
from tests.support import DEVICE_LIST, GET_COMM, UNREACHABLE, BridgeFactory, Sim


@pytest.mark.parametrize("origin", ["http://dashboard.lan:3000", "null"])
async def test_cors_lets_a_browser_page_read_devicelist(
    simulator: Sim, start_bridge: BridgeFactory, origin: str
) -> None:
    # "null" is what a page opened from file:// sends.
    bridge = await start_bridge(simulator.url)
    response = await bridge.get(DEVICE_LIST, headers={"Origin": origin})
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] in (origin, "*")
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "X-Cache" in exposed
    assert "Age" in exposed
    preflight = await bridge.options(
        DEVICE_LIST,
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status == 200
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert (await simulator.stats())["requests"] == {"DeviceList": 1}


async def test_cors_origins_can_be_restricted(simulator: Sim, start_bridge: BridgeFactory) -> None:
    bridge = await start_bridge(simulator.url, cors={"origins": ["http://ha.lan:8123"]})
    allowed = await bridge.get(DEVICE_LIST, headers={"Origin": "http://ha.lan:8123"})
    other = await bridge.get(DEVICE_LIST, headers={"Origin": "http://evil.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://ha.lan:8123"
    assert "Access-Control-Allow-Origin" not in other.headers


# Get_Comm kept for no time: every request must reach the PVS, so each one is rate-limited.
UNCACHED = {"ttl_status": 0.0, "max_stale": 0.0}


async def test_rate_limit_answers_429_json_with_retry_after_then_recovers(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    limits = {"enabled": True, "rate": 1.0, "burst": 3, "max_wait": 0.0}
    bridge = await start_bridge(simulator.url, clock=clock, rate_limit=limits, cache=UNCACHED)
    statuses = []
    for _ in range(3):
        statuses.append((await bridge.get(GET_COMM)).status)
        await clock.advance(0.001)  # past max_stale 0: the next one must ask the PVS
    assert statuses == [200, 200, 200]
    limited = await bridge.get(GET_COMM)
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "1"
    body = await limited.json()
    assert body["error"] == "rate_limited"
    await clock.advance(1.0)
    assert (await bridge.get(GET_COMM)).status == 200
    assert await simulator.count("Get_Comm") == 4  # the refused one never reached the PVS


async def test_a_client_over_its_rate_waits_its_turn_before_any_429(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    limits = {"enabled": True, "rate": 1.0, "burst": 1, "max_wait": 5.0}
    bridge = await start_bridge(simulator.url, clock=clock, rate_limit=limits, cache=UNCACHED)
    assert (await bridge.get(GET_COMM)).status == 200
    await clock.advance(0.001)
    waiting = asyncio.create_task(bridge.get(GET_COMM))  # needs a token: 1 s away
    await clock.advance(0.5)
    assert not waiting.done()
    assert await simulator.count("Get_Comm") == 1
    await clock.advance(0.6)
    assert (await asyncio.wait_for(waiting, 10)).status == 200
    assert await simulator.count("Get_Comm") == 2


async def test_answers_from_memory_are_never_refused_for_rate(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    # A Home Assistant restart: 60 requests in one second from one address, all for
    # commands the cache holds. The default limit must let every one through.
    bridge = await start_bridge(simulator.url, rate_limit={"enabled": True})
    assert (await bridge.get(DEVICE_LIST)).status == 200
    assert (await bridge.get(GET_COMM)).status == 200
    answers = await asyncio.gather(
        *(bridge.get(DEVICE_LIST if index % 2 else GET_COMM) for index in range(60))
    )
    assert [answer.status for answer in answers] == [200] * 60
    assert {answer.headers["X-Cache"] for answer in answers} == {"HIT"}


async def test_rate_limiter_memory_is_bounded() -> None:
    limits = RateLimitConfig(rate=1.0, burst=1, max_clients=100)
    limiter = RateLimiter(FakeClock(), limits)
    for index in range(1000):
        limiter.reserve(f"10.0.{index // 256}.{index % 256}")
    assert limiter.tracked == 100


async def test_health_reports_ok_with_cache_ages_and_interfaces(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    bridge = await start_bridge(simulator.url, clock=clock)
    before = await (await bridge.get("/health")).json()
    assert before["status"] == "degraded"  # not reached the PVS yet: not "ok"
    await bridge.get(DEVICE_LIST)
    await clock.advance(4.0)
    response = await bridge.get("/health")
    document = await response.json()
    assert response.status == 200
    assert document["status"] == "ok"
    assert document["upstream"]["url"] == simulator.url
    assert document["upstream"]["reachable"] is True
    assert document["upstream"]["consecutive_failures"] == 0
    (entry,) = document["cache"]["entries"]
    assert (entry["name"], entry["age_s"], entry["state"]) == ("DeviceList", 4.0, "fresh")
    assert "pvs_side" in document["interfaces"]
    assert isinstance(document["interfaces"]["lan"], list)
    assert document["version"]


async def test_health_is_down_503_when_nothing_can_be_served(start_bridge: BridgeFactory) -> None:
    bridge = await start_bridge(UNREACHABLE)
    failed = await bridge.get(DEVICE_LIST)
    assert failed.status in (502, 504)
    body = await failed.json()
    assert body["last_good_age_s"] is None
    assert "no answer was ever received" in body["message"]
    response = await bridge.get("/health")
    document = await response.json()
    assert response.status == 503
    assert document["status"] == "down"
    assert document["upstream"]["last_error"]["kind"] == "unreachable"
    assert any("PVS failing" in reason for reason in document["reasons"])


async def test_metrics_are_prometheus_text(simulator: Sim, start_bridge: BridgeFactory) -> None:
    bridge = await start_bridge(simulator.url)
    await bridge.get(DEVICE_LIST)
    await bridge.get(DEVICE_LIST)
    text = await (await bridge.get("/metrics")).text()
    assert 'pvs_bridge_upstream_requests_total{name="DeviceList"} 1' in text
    assert 'pvs_bridge_responses_total{cache="HIT",status="200"} 1' in text
    assert 'pvs_bridge_responses_total{cache="MISS",status="200"} 1' in text
    assert "pvs_bridge_up 1" in text


def test_log_summary_is_one_line_of_what_changed_since_the_last() -> None:
    from bridge.web.metrics import Metrics

    metrics = Metrics()
    assert metrics.summary_since_last() is None  # nothing happened: no line at all
    for _ in range(3):
        metrics.count_response(200, "HIT")
    metrics.count_response(429, "NONE")
    line = metrics.summary_since_last()
    assert line == "served 4 answers (HIT 3, NONE 1, errors 1)"
    assert metrics.summary_since_last() is None
