"""Under attack the log stays readable: what clients do wrong is counted, not logged.

Malformed requests and clients hanging up mid-body are logged at debug only and counted
in the summary line; no ERROR and no traceback for what is the client's fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable

import pytest

from bridge.host.logs import BurstFilter, formatter
from bridge.web import keys
from tests.support import ServeFactory, Sim, raw_request, until

MALFORMED = (
    b"GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    b"GET /cgi-bin/dl_cgi HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
)


async def hang_up_mid_body(port: int, target: str) -> None:
    """Promise a body of 1000 bytes and hang up while the bridge waits for it."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
    writer.write(b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.01)  # the request is being answered: its body is being read
    writer.transport.abort()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def in_batches(count: int, make: Callable[[int], Awaitable[None]], batch: int = 30) -> None:
    """`make(n)` for n below `count`, `batch` at a time."""
    for start in range(0, count, batch):
        await asyncio.gather(*(make(n) for n in range(start, min(count, start + batch))))


async def test_malformed_requests_and_hang_ups_are_counted_never_logged_as_errors(
    simulator: Sim, serve_bridge: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bridge = await serve_bridge(simulator.url)
    port = bridge.port

    async def malformed(n: int) -> None:
        answer = await raw_request(port, MALFORMED[n % len(MALFORMED)])
        assert answer is not None and answer.status == 400

    async def hang_up(n: int) -> None:
        await hang_up_mid_body(port, "POST /vars")

    await in_batches(300, malformed)
    await in_batches(60, hang_up)
    trouble = bridge.app[keys.METRICS].trouble
    await until(lambda: trouble.counts["hung_up"] == 60)

    assert trouble.counts["malformed"] == 300
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    assert not [record for record in caplog.records if record.exc_info]
    assert len(caplog.records) <= 5
    line = bridge.app[keys.METRICS].summary_since_last()
    assert line is not None
    assert "malformed requests 300" in line and "hung up mid-request 60" in line
    assert bridge.app[keys.METRICS].summary_since_last() is None  # counted once


class Collect(logging.Handler):
    """The records a handler writes (after its filters)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_one_kind_of_line_is_written_at_most_log_burst_times_a_minute() -> None:
    clock = [0.0]  # seconds, moved by hand
    handler = Collect()
    handler.addFilter(BurstFilter(5, now=lambda: clock[0]))
    logger = logging.getLogger("tests.burst")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for n in range(100):
            logger.warning("client %d did something", n)  # one kind, whatever the args
        logger.warning("another kind of line")
        assert len(handler.lines) == 6
        clock[0] += 30
        logger.warning("client %d did something", 100)
        assert len(handler.lines) == 6  # still the same minute
        clock[0] += 31
        logger.warning("client %d did something", 101)
        assert handler.lines[6:] == [
            "96 similar lines suppressed in the last minute: client %d did something",
            "client 101 did something",
        ]
    finally:
        logger.removeHandler(handler)


def test_every_line_under_systemd_carries_its_journald_priority() -> None:
    journal = formatter({"JOURNAL_STREAM": "8:1234"})
    plain = formatter({})

    def record(level: int, exc: bool = False) -> logging.LogRecord:
        info = None
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                info = sys.exc_info()
        return logging.LogRecord("bridge", level, __file__, 1, "a %s line", ("test",), info)

    assert journal.format(record(logging.DEBUG)) == "<7>DEBUG bridge: a test line"
    assert journal.format(record(logging.INFO)).startswith("<6>INFO ")
    assert journal.format(record(logging.WARNING)).startswith("<4>WARNING ")
    assert journal.format(record(logging.CRITICAL)).startswith("<2>CRITICAL ")
    traceback_lines = journal.format(record(logging.ERROR, exc=True)).splitlines()
    assert len(traceback_lines) > 3
    assert all(line.startswith("<3>") for line in traceback_lines)  # the traceback's too
    assert not plain.format(record(logging.ERROR)).startswith("<")
    assert "ERROR bridge: a test line" in plain.format(record(logging.ERROR))
