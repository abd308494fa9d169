"""The only code that talks to the PVS: one request at a time, through one gate.

Everything that reaches the PVS (client misses, background refreshes, logins, writes)
goes through Upstream.fetch(), which holds a single asyncio lock while the request is
on the wire. Waiters queue in FIFO order up to `queue_limit`; beyond that a caller gets
GateFull at once. A Breaker decides when, after failures, the next attempt may go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from bridge.answer import Answer, replayable_headers
from bridge.breaker import Breaker
from bridge.clock import Clock

log = logging.getLogger(__name__)

USER_AGENT = "pvs-bridge"


class UpstreamError(Exception):
    """The PVS could not give a usable answer; `status` is what a client should see."""

    status = 502
    kind = "error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class GateFull(UpstreamError):
    """Too many requests are already queued for the PVS."""

    status = 503
    kind = "queue_full"


class BackingOff(UpstreamError):
    """The PVS failed recently; the breaker holds attempts until the backoff passes."""

    status = 503
    kind = "backing_off"


class Unreachable(UpstreamError):
    """Connecting to the PVS failed or the connection broke mid-answer."""

    status = 502
    kind = "unreachable"


class TimedOut(UpstreamError):
    """The PVS did not answer within the command's timeout."""

    status = 504
    kind = "timeout"


class BadAnswer(UpstreamError):
    """The PVS answered, but with an error status or a body that is not JSON."""

    status = 502
    kind = "bad_answer"

    def __init__(self, message: str, answer: Answer) -> None:
        super().__init__(message)
        self.answer = answer


@dataclass
class UpstreamStats:
    """Counters for /health and /metrics."""

    calls: Counter[str]
    failures: Counter[str]
    waiting: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    last_elapsed: float | None = None


def ssl_context(verify: bool) -> ssl.SSLContext | bool:
    """The PVS serves a self-signed certificate, so checking is off unless asked for."""
    if verify:
        return True
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Upstream:
    """A gate in front of the PVS: one request on the wire at a time, bounded queue."""

    def __init__(
        self,
        base_url: str,
        clock: Clock,
        breaker: Breaker,
        *,
        connect_timeout: float = 5.0,
        queue_limit: int = 64,
        verify_tls: bool = False,
        tls_fingerprint: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.breaker = breaker
        self.connect_timeout = connect_timeout
        self.queue_limit = queue_limit
        self._verify_tls = verify_tls
        self._fingerprint = tls_fingerprint
        self._gate = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.stats = UpstreamStats(calls=Counter(), failures=Counter())

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
        # aiohttp silently resends an idempotent request once when the connection drops
        # (aio-libs/aiohttp#10790, no public switch): a second request to a PVS that just
        # reset us is exactly the retry the breaker exists to prevent.
        self._session._retry_connection = False

    async def close(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open client session (start() must have run)."""
        if self._session is None:
            raise RuntimeError("Upstream.start() has not run")
        return self._session

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Wait for the gate, refusing at once when the queue is full or the breaker holds."""
        self._check_breaker()
        if self._gate.locked() and self.stats.waiting >= self.queue_limit:
            raise GateFull(
                f"{self.stats.waiting} requests already wait for the PVS", retry_after=5.0
            )
        self.stats.waiting += 1
        try:
            await self._gate.acquire()
        finally:
            self.stats.waiting -= 1
        try:
            # A failure while we queued pushes the next attempt out; honour it here so
            # a queue of waiters does not turn into a burst against a sick PVS.
            self._check_breaker()
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            try:
                yield
            finally:
                self.stats.in_flight -= 1
        finally:
            self._gate.release()

    def _check_breaker(self) -> None:
        wait = self.breaker.wait_seconds()
        if wait > 0:
            self.breaker.attempts_refused += 1
            raise BackingOff(
                f"PVS failed {self.breaker.consecutive_failures} time(s) in a row; "
                f"next attempt in {wait:.0f} s",
                retry_after=wait,
            )

    async def fetch(
        self,
        target: str,
        *,
        name: str,
        timeout: float,
        method: str = "GET",
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        expect_json: bool = True,
        auth_expiry: bool = False,
        proves_health: bool = True,
    ) -> Answer:
        """Send one request to the PVS through the gate and return its answer.

        `target` is the path and query, already normalised by the policy. Raises an
        UpstreamError subclass on failure; failures feed the breaker. With `auth_expiry`
        a 401 or 403 is returned as an answer (the caller logs in again and retries),
        not counted as the PVS failing. With `proves_health=False` (a login) a good
        answer does not close the breaker: only data the bridge asked for does.
        """
        async with self._turn():
            answer = await self._send(
                target, name, timeout, method, data, headers, expect_json, auth_expiry
            )
            if proves_health and answer.status < 400:
                self.breaker.record_success()
            return answer

    async def _send(
        self,
        target: str,
        name: str,
        timeout: float,
        method: str,
        data: bytes | None,
        headers: dict[str, str] | None,
        expect_json: bool,
        auth_expiry: bool = False,
    ) -> Answer:
        self.stats.calls[name] += 1
        # An answer is as old as the request that asked for it (RFC 9111's response
        # delay): a DeviceList that took a minute is a minute old when it arrives.
        started, started_wall = self.clock.monotonic(), self.clock.wall()
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, connect=min(self.connect_timeout, timeout)
        )
        try:
            async with self.session.request(
                method,
                self.base_url + target,
                data=data,
                headers=headers,
                timeout=client_timeout,
                allow_redirects=False,
            ) as response:
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
            error: UpstreamError = TimedOut(f"PVS did not answer {name} within {timeout:g} s")
            raise self.count_failure(error, name) from None
        except aiohttp.ClientError as exc:
            detail = str(exc) or type(exc).__name__
            raise self.count_failure(
                Unreachable(f"PVS request {name} failed: {detail}"), name
            ) from None
        self.stats.last_elapsed = answer.elapsed
        problem = self._problem(answer, expect_json, auth_expiry)
        if problem:
            raise self.count_failure(BadAnswer(f"PVS answered {name} with {problem}", answer), name)
        return answer

    @staticmethod
    def _problem(answer: Answer, expect_json: bool, auth_expiry: bool = False) -> str | None:
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

    def count_failure(self, error: UpstreamError, name: str) -> UpstreamError:
        """Record a failed attempt (stats, breaker, log) and return the error to raise."""
        self.stats.failures[error.kind] += 1
        self.breaker.record_failure(error.kind, error.message)
        log.warning("upstream %s failed: %s", name, error.message)
        return error
