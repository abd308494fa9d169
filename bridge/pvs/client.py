"""The only code that sends anything to the PVS: `Upstream.fetch`, one request per turn.

Each request takes a turn at the gate (one at a time, paced), gets its own timeout, is
never redirected nor resent, and its answer is judged here: a failure feeds the backoff
and the health record; only data the bridge asked for counts as a success.
"""

from __future__ import annotations

import bisect
import json
import logging
import ssl
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bridge.aiohttp_private import never_resend
from bridge.clock import Clock
from bridge.pvs.answer import Answer, replayable_headers
from bridge.pvs.backoff import Backoff
from bridge.pvs.errors import BadAnswer, TimedOut, Unreachable, UpstreamError
from bridge.pvs.gate import Gate
from bridge.pvs.record import HealthRecord

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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.gate = gate
        self.backoff: Backoff = gate.backoff
        self.record = record
        self.connect_timeout = connect_timeout
        self._verify_tls = verify_tls
        self._fingerprint = tls_fingerprint
        self._session: aiohttp.ClientSession | None = None
        self.stats = UpstreamStats()

    async def start(self) -> None:
        """Open the one client session (called from the app's cleanup context)."""
        ssl_setting: ssl.SSLContext | bool | aiohttp.Fingerprint = ssl_context(self._verify_tls)
        if self._fingerprint:
            ssl_setting = aiohttp.Fingerprint(bytes.fromhex(self._fingerprint.replace(":", "")))
        connector = aiohttp.TCPConnector(limit=1, ssl=ssl_setting, force_close=False)
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
        async with self.gate.turn():
            answer = await self._send(target, send)
            if send.proves_health and answer.status < 400:
                self.backoff.succeeded()
                self.record.success()
            return answer

    async def _send(self, target: str, send: Send) -> Answer:
        if self._session is None:
            raise RuntimeError("Upstream.start() has not run")
        self.stats.calls[send.name] += 1
        # An answer is as old as the request that asked for it (RFC 9111's response
        # delay): a DeviceList that took a minute is a minute old when it arrives.
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
                body = await response.read()
                answer = Answer(
                    status=response.status,
                    body=body,
                    content_type=response.headers.get("Content-Type"),
                    headers=replayable_headers(list(response.headers.items())),
                    fetched_at=started,
                    fetched_wall=started_wall,
                    elapsed=self.clock.monotonic() - started,
                    cookies=tuple((name, c.value) for name, c in response.cookies.items()),
                )
        except TimeoutError:
            message = f"PVS did not answer {send.name} within {send.timeout:g} s"
            raise self.count_failure(TimedOut(message), send.name) from None
        except aiohttp.ClientError as exc:
            message = f"PVS request {send.name} failed: {str(exc) or type(exc).__name__}"
            raise self.count_failure(Unreachable(message), send.name) from None
        self.stats.last_elapsed = answer.elapsed
        self.stats.latency.setdefault(send.name, Latency()).observe(answer.elapsed)
        problem = answer_problem(answer, send.expect_json, send.auth_expiry)
        if problem:
            error = BadAnswer(f"PVS answered {send.name} with {problem}", answer)
            raise self.count_failure(error, send.name)
        return answer

    def count_failure(self, error: UpstreamError, name: str) -> UpstreamError:
        """Record a failed attempt (stats, backoff, record, log) and return the error."""
        self.stats.failures[error.kind] += 1
        self.backoff.failed()
        self.record.failure(error.kind, error.message)
        log.warning("upstream %s failed: %s", name, error.message)
        return error


def answer_problem(answer: Answer, expect_json: bool, auth_expiry: bool = False) -> str | None:
    """Why this answer says the PVS is unwell (None when it is fine or a plain 4xx)."""
    if auth_expiry and answer.status in (401, 403):
        return None  # a session that expired: the caller renews it
    if answer.status >= 500 or answer.status in (401, 403):
        return f"HTTP {answer.status}"
    if answer.ok and expect_json:
        try:
            json.loads(answer.body)
        except (ValueError, RecursionError):  # nesting deep enough to exhaust the stack
            return f"a body that is not valid JSON ({len(answer.body)} bytes)"
    return None
