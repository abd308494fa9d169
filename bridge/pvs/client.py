"""The only code that sends anything to the PVS: `Upstream.fetch`, one request per turn.

Each request takes a turn at the gate (one at a time, paced), gets its own timeout, is
never redirected nor resent, goes on a connection of its own (closed after the answer, so
an answer the PVS sends unasked can never be read as the next request's), reads at most
`upstream.max_body_bytes`, and its answer is judged here (see verdict): a failure feeds
the backoff and the health record; only data the bridge asked for counts as a success.
After a timeout the next attempt waits at least `after_timeout`: the PVS is most likely
still working on the request the bridge gave up on, and a second one would be two at once
for it.
"""

from __future__ import annotations

import bisect
import logging
import ssl
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bridge.aiohttp_private import never_resend
from bridge.clock import Clock
from bridge.pvs.answer import Answer, replayable_headers
from bridge.pvs.backoff import Backoff
from bridge.pvs.body import read_capped
from bridge.pvs.budget import DailyBudget
from bridge.pvs.errors import BadAnswer, TimedOut, Unreachable, UpstreamError
from bridge.pvs.gate import Gate
from bridge.pvs.inflight import InFlight
from bridge.pvs.record import HealthRecord
from bridge.pvs.verdict import answer_problem, retry_after

__all__ = ["Send", "Upstream", "answer_problem"]

log = logging.getLogger(__name__)

USER_AGENT = "pvs-bridge"
# Upper bounds (seconds) of the latency histogram's buckets, from a quick status answer to
# a DeviceList on a busy PVS; anything slower counts in the last (+Inf) bucket.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class Latency:
    """How long one command's answers took: a count per bucket (not cumulative), the sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        """One answer's latency, in the first bucket whose bound it does not exceed."""
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


@dataclass
class UpstreamStats:
    """Counters for /health and /metrics; latency per command name (the allowlist's)."""

    calls: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    last_elapsed: float | None = None
    latency: dict[str, Latency] = field(default_factory=dict)


@dataclass(frozen=True)
class Send:
    """How one request goes out, and how its answer is judged."""

    name: str
    timeout: float
    method: str = "GET"
    data: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    expect_json: bool = True
    auth_expiry: bool = False  # a 401/403 is an answer for the caller (a login renews it)
    proves_health: bool = True  # False for a login: only data closes the backoff


def ssl_context(verify: bool) -> ssl.SSLContext | bool:
    """The PVS serves a self-signed certificate, so checking is off unless asked for."""
    if verify:
        return True
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Upstream:
    """Requests to the PVS at `base_url`, each through the gate."""

    def __init__(
        self,
        base_url: str,
        clock: Clock,
        gate: Gate,
        record: HealthRecord,
        *,
        connect_timeout: float = 5.0,
        verify_tls: bool = False,
        tls_fingerprint: str = "",
        max_body_bytes: int = 8 * 1024 * 1024,
        daily_budget: int | None = None,
        after_timeout: float = 0.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.gate = gate
        self.backoff: Backoff = gate.backoff
        self.record = record
        self.connect_timeout = connect_timeout
        self._verify_tls = verify_tls
        self._fingerprint = tls_fingerprint
        self.max_body_bytes = max_body_bytes
        self.after_timeout = after_timeout
        self._session: aiohttp.ClientSession | None = None
        self.stats = UpstreamStats()
        self.budget = DailyBudget(clock, daily_budget)  # requests sent today (see budget)
        self.in_flight = InFlight(clock)  # what the PVS holds now, for /health

    async def start(self) -> None:
        """Open the one client session (called from the app's cleanup context)."""
        ssl_setting: ssl.SSLContext | bool | aiohttp.Fingerprint = ssl_context(self._verify_tls)
        if self._fingerprint:
            ssl_setting = aiohttp.Fingerprint(bytes.fromhex(self._fingerprint.replace(":", "")))
        # force_close: one connection per request, "Connection: close" on it. Paced a
        # second or more apart, reuse saves nothing, and a kept-alive connection can hold
        # an answer nobody asked for, which the next request would read as its own.
        connector = aiohttp.TCPConnector(limit=1, ssl=ssl_setting, force_close=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        never_resend(self._session)

    async def close(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, target: str, send: Send) -> Answer:
        """Send one request to the PVS through the gate and return its answer.

        `target` is the path and query, already canonical. Raises an UpstreamError
        subclass on failure; failures feed the backoff and the health record.
        """
        self.budget.check(send.name)  # past the day's budget, only the device read goes on
        async with self.gate.turn():
            with self.in_flight.request(send.name, send.timeout):
                answer = await self._send(target, send)
            if send.proves_health and answer.status < 400:
                self.backoff.succeeded()
                self.record.success()
            return answer

    async def _send(self, target: str, send: Send) -> Answer:
        if self._session is None:
            raise RuntimeError("Upstream.start() has not run")
        self.stats.calls[send.name] += 1
        self.budget.spend()
        started, started_wall = self.clock.monotonic(), self.clock.wall()
        timeout = aiohttp.ClientTimeout(
            total=send.timeout, connect=min(self.connect_timeout, send.timeout)
        )
        try:
            # The injected clock's deadline (tests drive it); aiohttp's own total stays as
            # the same bound on real time.
            async with (
                self.clock.deadline(send.timeout),
                self._session.request(
                    send.method,
                    self.base_url + target,
                    data=send.data,
                    headers=dict(send.headers),
                    timeout=timeout,
                    allow_redirects=False,
                ) as response,
            ):
                body = await read_capped(response, self.max_body_bytes, send.name)
                answer = _answer_of(response, body, started, started_wall, self.clock)
                asked_to_wait = retry_after(
                    answer, response.headers.get("Retry-After"), started_wall
                )
        except TimeoutError:
            message = f"PVS did not answer {send.name} within {send.timeout:g} s"
            raise self.count_failure(
                TimedOut(message), send.name, at_least=self.after_timeout
            ) from None
        except UpstreamError as too_long:  # cut off while reading (see body)
            raise self.count_failure(too_long, send.name) from None
        except aiohttp.ClientError as exc:
            message = f"PVS request {send.name} failed: {str(exc) or type(exc).__name__}"
            raise self.count_failure(Unreachable(message), send.name) from None
        self.stats.last_elapsed = answer.elapsed
        self.stats.latency.setdefault(send.name, Latency()).observe(answer.elapsed)
        problem = answer_problem(answer, send.expect_json, send.auth_expiry)
        if problem:
            error = BadAnswer(f"PVS answered {send.name} with {problem}", answer)
            error.retry_after = asked_to_wait
            raise self.count_failure(error, send.name, at_least=asked_to_wait or 0.0)
        self.in_flight.answered(send.name, answer.elapsed)
        return answer

    def count_failure(
        self, error: UpstreamError, name: str, at_least: float = 0.0
    ) -> UpstreamError:
        """Record a failed attempt (stats, backoff, record, log) and return the error; the
        next attempt waits at least `at_least` seconds (the PVS's Retry-After)."""
        self.stats.failures[error.kind] += 1
        self.backoff.failed(at_least)
        self.record.failure(error.kind, error.message)
        log.warning("upstream %s failed: %s", name, error.message)
        return error


def _answer_of(
    response: aiohttp.ClientResponse, body: bytes, started: float, started_wall: float, clock: Clock
) -> Answer:
    """The answer as the bridge keeps it: dated when it was asked for (RFC 9111's response
    delay: a DeviceList that took a minute is a minute old when it arrives)."""
    return Answer(
        status=response.status,
        body=body,
        content_type=response.headers.get("Content-Type"),
        headers=replayable_headers(list(response.headers.items())),
        fetched_at=started,
        fetched_wall=started_wall,
        elapsed=clock.monotonic() - started,
        cookies=tuple((name, c.value) for name, c in response.cookies.items()),
    )
