"""Why the PVS could not give a usable answer; each error carries what a client should see."""

from __future__ import annotations

from bridge.pvs.answer import Answer


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
    """The PVS failed recently; the backoff holds attempts until its delay passes."""

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


class Rejected(UpstreamError):
    """The PVS answered 2xx, but the answer looks broken compared with the last good one."""

    status = 502
    kind = "rejected"


class TooLarge(Rejected):
    """The PVS's answer was longer than `upstream.max_body_bytes`: cut off, never kept."""

    kind = "too_large"


class LoginRefused(UpstreamError):
    """The PVS refused the bridge's credentials."""

    status = 502
    kind = "login_refused"


class NoLogin(UpstreamError):
    """The PVS answered the login, but not with a session."""

    status = 502
    kind = "login_failed"
