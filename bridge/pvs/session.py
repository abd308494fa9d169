"""The bridge's one login session with a PVS on 2025 firmware.

Every request that needs a session goes through UpstreamSession.fetch(): it logs in
when there is no session (once, however many callers wait), sends the session cookie
itself (the upstream client keeps no cookie jar), and when the PVS answers 401 or 403
it logs in again and retries once. A second refusal right after a fresh login counts as
the PVS failing. Logins go through the gate like any request.

A refused login (wrong password) is not retried at the pace clients poll: further
attempts follow a backoff that doubles up to 15 minutes, and /health says why. The
password and the session token are never logged nor shown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from bridge.clock import Clock
from bridge.flight import SingleFlight
from bridge.pvs.answer import Answer
from bridge.pvs.backoff import Backoff
from bridge.pvs.client import Send, Upstream
from bridge.pvs.credentials import USER, basic_header
from bridge.pvs.errors import BadAnswer, LoginRefused, NoLogin, UpstreamError

log = logging.getLogger(__name__)

LOGIN_TARGET = "/auth?login"
REFUSED_BACKOFF = 60.0
REFUSED_BACKOFF_MAX = 900.0


class UpstreamSession:
    """One shared PVS session, renewed only when the PVS says it has expired."""

    def __init__(
        self,
        upstream: Upstream,
        clock: Clock,
        password: Callable[[], Awaitable[str]],
        *,
        password_configured: bool,
        timeout: float,
    ) -> None:
        self.upstream = upstream
        self.clock = clock
        self._password = password
        self.password_configured = password_configured
        self.timeout = timeout
        self._token: str | None = None
        self._login_flight: SingleFlight[str, str] = SingleFlight()
        # Refused credentials: exactly doubling waits (no jitter), 60 s up to 15 min.
        self.refused = Backoff(
            clock, initial=REFUSED_BACKOFF, maximum=REFUSED_BACKOFF_MAX, jitter=lambda: 1.0
        )
        self.logged_in_at: float | None = None  # monotonic
        self.logins = 0
        self.renewals = 0
        self.refusals = 0
        self.problem: str | None = None

    @property
    def logged_in(self) -> bool:
        """Whether the bridge holds a session it has not seen refused."""
        return self._token is not None

    async def token(self) -> str:
        """The current session, logging in first when there is none (one login for all)."""
        if self._token is not None:
            return self._token
        return await self._login_flight.run("login", self._login)

    def expired(self, token: str, why: str = "expired") -> None:
        """The PVS refused `token`: forget it, unless another caller already renewed it."""
        if self._token == token:
            self._token = None
            self.renewals += 1
            log.info("PVS session %s after %.0f s; logging in again", why, self.session_age())

    def session_age(self) -> float:
        """Seconds since the last login (0 when never logged in)."""
        if self.logged_in_at is None:
            return 0.0
        return self.clock.monotonic() - self.logged_in_at

    async def _login(self) -> str:
        wait = self.refused.wait_seconds()
        if wait > 0:
            raise LoginRefused(self.problem or "the PVS refused the login", retry_after=wait)
        password = await self._password()
        send = Send(
            "auth?login",
            self.timeout,
            headers=(("Authorization", basic_header(password)),),
            expect_json=False,  # _session_from reads the body or, failing that, the cookie
            # A PVS that lets the bridge log in but then fails every data request is
            # still failing: the login must not reset the backoff.
            proves_health=False,
        )
        try:
            answer = await self.upstream.fetch(LOGIN_TARGET, send)
        except BadAnswer as error:
            if error.answer.status in (401, 403):
                raise self._refused(error.answer.status) from None
            raise
        token = _session_from(answer)
        if token is None:
            raise NoLogin(
                f"the PVS answered the login with HTTP {answer.status} and no session; "
                "is this really 2025 firmware? (upstream.firmware)"
            )
        self.logins += 1
        self.logged_in_at = self.clock.monotonic()
        self.refused.succeeded()
        self.problem = None
        self._token = token
        log.info("logged in to the PVS as %s (login %d)", USER, self.logins)
        return token

    def _refused(self, status: int) -> LoginRefused:
        self.refusals += 1
        wait = self.refused.failed()
        hint = (
            " (upstream.password)"
            if self.password_configured
            else " (the default: the serial's last 5 characters); set upstream.password"
        )
        self.problem = (
            f"the PVS refused the login as {USER} (HTTP {status}): wrong password{hint}? "
            f"Next attempt in {wait:.0f} s."
        )
        log.error("%s", self.problem)
        return LoginRefused(self.problem, retry_after=wait)

    async def fetch(self, target: str, send: Send, *, retry: bool = True) -> Answer:
        """Send `target` with the session; on 401/403 log in again and retry once.

        With `retry=False` (writes) it is sent once: a refused write is answered as the
        PVS answered it, and the session is renewed for the next request.
        """
        token = await self.token()
        try:
            answer = await self.upstream.fetch(target, _with_session(send, token, renews=True))
        except BadAnswer as error:
            if error.answer.status >= 500:
                # Some builds report a dead session with a 500 (clients log in again on
                # it). No retry now, the PVS may just be sick: the next attempt, on the
                # backoff schedule, logs in first.
                self.expired(token, f"answered HTTP {error.answer.status}")
            raise
        if answer.status not in (401, 403):
            return answer
        self.expired(token)
        if not retry:
            return answer
        token = await self.token()
        return await self.upstream.fetch(target, _with_session(send, token, renews=False))

    async def logout(self) -> None:
        """End the session politely (best effort, at shutdown)."""
        token, self._token = self._token, None
        if token is None:
            return
        send = Send("auth?logout", min(self.timeout, 5.0), expect_json=False)
        try:
            await self.upstream.fetch("/auth?logout", _with_session(send, token, renews=True))
        except UpstreamError as error:
            log.info("PVS logout failed (harmless): %s", error.message)

    def describe(self) -> dict[str, object]:
        """What /health shows: counts and state, never the password or the session."""
        return {
            "logged_in": self.logged_in,
            "session_age_s": round(self.session_age(), 1) if self.logged_in else None,
            "logins": self.logins,
            "renewals": self.renewals,
            "login_refusals": self.refusals,
            "login_problem": self.problem,
            "next_login_in_s": round(self.refused.wait_seconds(), 1),
        }


def _with_session(send: Send, token: str, *, renews: bool) -> Send:
    """`send` carrying the session cookie; with `renews` a 401/403 comes back as an answer."""
    return replace(
        send, headers=(*send.headers, ("Cookie", f"session={token}")), auth_expiry=renews
    )


def _session_from(answer: Answer) -> str | None:
    """The session id from a login answer: its JSON body, else its `session` cookie.

    The PVS sends both today; either alone is enough, in case a firmware drops one.
    """
    if not answer.ok:
        return None
    try:
        document = json.loads(answer.body)
    except (ValueError, RecursionError):  # not JSON, or nested past the stack: no session
        document = None
    candidates = [document.get("session") if isinstance(document, dict) else None]
    candidates += [value for name, value in answer.cookies if name == "session"]
    for token in candidates:
        if isinstance(token, str) and token and token.isprintable() and ";" not in token:
            return token
    return None
