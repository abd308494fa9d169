"""Every PVS answer is classified: data (2xx), the PVS's definitive refusals (400, 404,
passed on as said), and failures (everything else: 3xx and 429 too) that feed the backoff,
which honours a Retry-After. A redirect is never followed and its Location never reaches a
client. Each request has a connection of its own, so an answer the PVS sends unasked on
an idle connection is never read as the answer to the next request.
"""

from __future__ import annotations

import asyncio
import email.utils
import json

import pytest

from bridge.clock import FakeClock
from bridge.pvs.answer import Answer
from bridge.pvs.verdict import RETRY_AFTER_MAX, answer_problem, retry_after
from bridge.simulator.faults import FaultSettings
from bridge.simulator.hostile_answers import UNSOLICITED_BODY
from bridge.web.keys import UPSTREAM
from tests.hostile_pvs import Asked, HostilePVS, answer, hostile_pvs
from tests.support import DEVICE_LIST, FAULT_TIMING, BridgeFactory, SimulatorFactory, health, until

LOCATION = FaultSettings().location
DL = "/cgi-bin/dl_cgi?Command="


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (200, False),
        (400, False),
        (404, False),
        (301, True),
        (302, True),
        (304, True),
        (307, True),
        (401, True),
        (403, True),
        (405, True),
        (418, True),
        (429, True),
        (500, True),
        (503, True),
    ],
)
def test_every_status_is_data_a_refusal_or_a_failure(status: int, failure: bool) -> None:
    verdict = answer_problem(Answer(status, b"{}", "application/json"), expect_json=True)
    assert (verdict is not None) is failure


def test_retry_after_in_seconds_or_as_a_date_bounded() -> None:
    now = 1_700_000_000.0
    too_many = Answer(429, b"", None)
    assert retry_after(too_many, "30", now) == 30.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after(Answer(503, b"", None), date, now) == pytest.approx(90.0)
    assert retry_after(too_many, "99999999", now) == RETRY_AFTER_MAX
    assert retry_after(too_many, "soon", now) is None
    assert retry_after(Answer(500, b"", None), "30", now) is None  # only 429 and 503 say when


@pytest.mark.parametrize("mode", ["redirect", "too_many"])
async def test_redirects_and_429s_are_failures_that_hold_the_pvs_off(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, mode: str
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    bridge = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    await sim.fault(mode)
    for _ in range(40):  # 40 client requests over 40 s of (fake) time
        response = await bridge.get(DEVICE_LIST)
        assert response.status != 200
        assert "Location" not in response.headers
        assert LOCATION.encode() not in await response.read()
        await clock.advance(1.0)

    # The backoff's few attempts (2, 4, 8, 16 s apart; 30 s on a 429's word), not 40.
    assert 1 <= await sim.count() <= 5
    _status, document = await health(bridge)
    assert document["status"] != "ok"
    assert document["upstream"]["consecutive_failures"] >= 1
    assert LOCATION not in json.dumps(document)
    assert (await sim.stats())["max_concurrent"] == 1


async def test_a_redirect_never_replaces_good_data(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    bridge = await start_bridge(sim.url, FAULT_TIMING, clock=clock)
    good = await (await bridge.get(DEVICE_LIST)).read()
    await sim.fault("redirect")
    await clock.advance(11.0)  # expired: the next client starts a refresh, which fails
    for _ in range(3):
        response = await bridge.get(DEVICE_LIST)
        assert response.status == 200
        assert "Location" not in response.headers
        assert await response.read() == good
    assert await sim.count() == 2


async def test_retry_after_is_a_floor_under_the_backoff(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    bridge = await start_bridge(sim.url, FAULT_TIMING, clock=clock)  # backoff: 2 s first
    await sim.fault("too_many", retry_after=30)
    first = await bridge.get(DEVICE_LIST)
    assert first.status == 429  # the PVS's own word, passed on
    assert await sim.count() == 1

    await clock.advance(20.0)  # far past the backoff's 2 s, not past the PVS's 30 s
    held = await bridge.get(DEVICE_LIST)
    assert held.status in (503, 504)  # held back, not sent
    assert int(held.headers["Retry-After"]) == 10
    assert await sim.count() == 1

    await clock.advance(10.5)
    await sim.fault("ok")
    assert (await bridge.get(DEVICE_LIST)).status == 200
    assert await sim.count() == 2


async def test_the_pvs_s_refusals_pass_through_and_are_no_failure(
    start_bridge: BridgeFactory,
) -> None:
    async def refuse(
        pvs: HostilePVS, asked: Asked, _r: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        status = 404 if asked.command == "Get_Comm" else 400
        await pvs.send(writer, answer(status, b'{"result": "refused"}'))

    async with hostile_pvs(refuse) as pvs:
        bridge = await start_bridge(pvs.url, FAULT_TIMING, upstream={"firmware": "legacy"})
        for command, status in (("Get_Comm", 404), ("GridProfileGet", 400)):
            response = await bridge.get(DL + command)
            assert response.status == status
            assert await response.json() == {"result": "refused"}
        _status, document = await health(bridge)
        assert document["upstream"]["consecutive_failures"] == 0
        assert document["upstream"]["failures"] == {}


async def test_an_unsolicited_answer_is_never_taken_for_the_next_one(
    start_bridge: BridgeFactory,
) -> None:
    """The hostile PVS ignores `Connection: close`, answers, then 50 ms later answers again
    on the same connection, unasked."""
    extra_sent = 0

    async def answer_twice(
        pvs: HostilePVS, asked: Asked, _r: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal extra_sent
        await pvs.send(writer, answer(200, json.dumps({"command": asked.command}).encode()))
        await asyncio.sleep(0.05)
        await pvs.send(writer, answer(200, UNSOLICITED_BODY))
        extra_sent += 1

    async with hostile_pvs(answer_twice) as pvs:
        bridge = await start_bridge(pvs.url, upstream={"firmware": "legacy"})
        for count, command in enumerate(("Get_Comm", "CheckFW", "GridProfileGet", "Start"), 1):
            response = await bridge.get(DL + command)
            assert response.status == 200
            assert await response.json() == {"command": command}

            def extra_gone(count: int = count) -> bool:
                return extra_sent >= count

            await until(extra_gone)  # the extra answer has gone out before the next request
        for command in ("Get_Comm", "CheckFW", "GridProfileGet", "Start"):  # as cached
            assert await (await bridge.get(DL + command)).json() == {"command": command}
        assert [asked.headers.get("connection") for asked in pvs.asked] == ["close"] * 4


async def test_the_simulator_s_unsolicited_answers_go_nowhere(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator()
    bridge = await start_bridge(sim.url)
    await sim.fault("unsolicited")
    for count, command in enumerate(("Get_Comm", "CheckFW", "GridProfileGet"), 1):
        response = await bridge.get(DL + command)
        assert response.status == 200
        assert b"unsolicited" not in await response.read()

        async def extra_gone(count: int = count) -> bool:
            faults = await sim.faults()
            return bool(faults["unsolicited_sent"] + faults["unsolicited_dropped"] >= count)

        await until(extra_gone)
    assert (await sim.faults())["unsolicited_sent"] == 0  # each connection closed at once


async def test_no_location_reaches_a_client_whatever_the_status(
    start_bridge: BridgeFactory,
) -> None:
    async def elsewhere(
        pvs: HostilePVS, asked: Asked, _r: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        status = {"Get_Comm": 404, "GridProfileGet": 500}.get(asked.command, 302)
        await pvs.send(writer, answer(status, b'{"result": "elsewhere"}', ("Location", LOCATION)))

    async with hostile_pvs(elsewhere) as pvs:
        bridge = await start_bridge(pvs.url, FAULT_TIMING, upstream={"firmware": "legacy"})
        for command in ("Get_Comm", "GridProfileGet", "CheckFW"):
            response = await bridge.get(DL + command)
            assert response.status != 200
            assert "Location" not in response.headers
            assert LOCATION.encode() not in await response.read()
            bridge.app[UPSTREAM].backoff.succeeded()  # each command its own attempt
        assert len(pvs.asked) == 3
