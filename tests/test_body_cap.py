"""The PVS's answers are read up to `upstream.max_body_bytes`, never further.

A hostile PVS on loopback (tests/hostile_pvs.py) sends a DeviceList of 100 MB: announced
by its Content-Length (refused before a byte of body is read), chunked, or until the
connection closes, or never ending. The hostile PVS counts the body bytes the socket took
from it (its send buffer is small), which bounds what the bridge read: about the cap plus
what the loopback socket buffers hold, nowhere near 100 MB. The attempt is a failure:
backoff, /health, the rejected-answers metric; nothing is cached or served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.simulator.faults import FaultError, FaultSettings
from bridge.web.keys import CACHE
from tests.hostile_pvs import Asked, HostilePVS, closed_by_client, hostile_pvs, pad_forever
from tests.support import (
    DEVICE_LIST,
    FAULT_TIMING,
    BridgeFactory,
    SimulatorFactory,
    advance,
    health,
)

CAP = 1024 * 1024
HUGE = 100_000_000
# What the bridge may have taken beyond the cap: the socket buffers on both ends of a
# loopback connection (the kernel grows the receiving one up to a few MiB) and aiohttp's.
SLACK = 8 * 1024 * 1024
# Real-time timeouts long enough that the cap, not a timeout, is what ends each attempt.
SLOW_TIMING: dict[str, Any] = {"timeout": 20.0, "devicelist_timeout": 20.0}


def _head(*lines: str) -> bytes:
    return (
        "\r\n".join(["HTTP/1.1 200 OK", "Content-Type: application/json", *lines]) + "\r\n\r\n"
    ).encode()


async def announced(
    pvs: HostilePVS, _asked: Asked, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Content-Length: 100 MB; the body only if the client is still there 5 s later."""
    await pvs.send(writer, _head(f"Content-Length: {HUGE}"), body=False)
    if not await closed_by_client(reader, 5.0):
        await pad_forever(pvs, writer, HUGE, chunked=False)


async def chunked(
    pvs: HostilePVS, _asked: Asked, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """100 MB in 64 KiB chunks (a body that would end, too late)."""
    await pvs.send(writer, _head("Transfer-Encoding: chunked"), body=False)
    await pad_forever(pvs, writer, HUGE, chunked=True)
    await pvs.send(writer, b"0\r\n\r\n", body=False)


async def endless(
    pvs: HostilePVS, _asked: Asked, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Chunks that never end (bounded at 2 x 100 MB only so a broken bridge ends the test)."""
    await pvs.send(writer, _head("Transfer-Encoding: chunked"), body=False)
    await pad_forever(pvs, writer, 2 * HUGE, chunked=True)


async def until_close(
    pvs: HostilePVS, _asked: Asked, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """No length at all: the body runs until the connection closes (HTTP/1.0 style)."""
    await pvs.send(writer, _head("Connection: close"), body=False)
    await pad_forever(pvs, writer, HUGE, chunked=False)


Behaviour = Callable[
    [HostilePVS, Asked, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]
CASES: dict[str, Behaviour] = {
    "announced": announced,
    "chunked": chunked,
    "endless": endless,
    "until_close": until_close,
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_body_over_the_cap_is_cut_and_counted_as_a_failure(
    start_bridge: BridgeFactory, case: str
) -> None:
    clock = FakeClock()
    async with hostile_pvs(CASES[case]) as pvs:
        bridge = await start_bridge(
            pvs.url,
            FAULT_TIMING,
            clock=clock,
            upstream={"firmware": "legacy", "max_body_bytes": CAP, **SLOW_TIMING},
        )
        answers = [await bridge.get(DEVICE_LIST) for _ in range(5)]

        assert len(pvs.asked) == 1  # the failure holds the rest off (backoff)
        if case == "announced":
            assert pvs.body_bytes_sent == 0  # refused on its Content-Length alone
        else:
            assert CAP <= pvs.body_bytes_sent <= CAP + SLACK
        for response in answers:
            assert response.status in (502, 503, 504)
            body = await response.read()
            assert len(body) < 4096
            assert b"   " not in body  # none of the padding reaches a client
        assert bridge.app[CACHE].peek(DEVICE_LIST) is None  # nothing kept

        _status, document = await health(bridge)
        assert document["status"] != "ok"
        assert document["upstream"]["last_error"]["kind"] == "too_large"
        assert document["upstream"]["consecutive_failures"] == 1
        metrics = await (await bridge.get("/metrics")).text()
        assert "pvs_bridge_rejected_answers_total 1" in metrics
        assert pvs.max_serving == 1


async def test_an_answer_under_the_cap_is_read_whole(
    start_bridge: BridgeFactory, start_simulator: SimulatorFactory
) -> None:
    clock = FakeClock()  # the PVS's values and CURTIME stand still: both reads are alike
    sim = await start_simulator(clock)
    good = await (await sim.session.get(sim.url + DEVICE_LIST)).read()
    assert len(good) < 65536 <= CAP
    bridge = await start_bridge(sim.url, clock=clock, upstream={"max_body_bytes": 65536})
    response = await bridge.get(DEVICE_LIST)
    assert response.status == 200
    assert await response.read() == good


@pytest.mark.parametrize("mode", ["huge_body", "endless_body"])
async def test_the_simulator_s_huge_bodies_never_replace_good_data(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, mode: str
) -> None:
    clock = FakeClock()
    sim = await start_simulator()
    bridge = await start_bridge(
        sim.url, FAULT_TIMING, clock=clock, upstream={"max_body_bytes": CAP, **SLOW_TIMING}
    )
    first = await bridge.get(DEVICE_LIST)
    assert first.status == 200
    good = await first.read()

    await sim.fault(mode)
    await advance(clock, bridge, 10.0)  # the entry expires; its refresh meets the fault
    assert await sim.count() == 2
    faults = await sim.faults()
    assert CAP <= faults["body_bytes_sent"] <= CAP + SLACK

    stale = await bridge.get(DEVICE_LIST)
    assert stale.status == 200
    assert stale.headers["X-Cache"] == "STALE"
    assert await stale.read() == good
    _status, document = await health(bridge)
    assert document["status"] == "degraded"
    assert document["upstream"]["last_error"]["kind"] == "too_large"
    assert (await sim.stats())["max_concurrent"] == 1


@pytest.mark.parametrize("size", [1.5, True, -1, "big"])
def test_the_simulator_refuses_a_body_size_that_is_not_a_whole_number(size: object) -> None:
    with pytest.raises(FaultError):
        FaultSettings.parse({"mode": "huge_body", "size": size})
