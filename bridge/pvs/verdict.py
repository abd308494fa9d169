"""What a PVS answer means: data, the PVS's definitive refusal, or the PVS failing.

- 2xx is data (and must be JSON where JSON is expected);
- 400 and 404 are the PVS refusing that request for good (an unknown command, a serial it
  does not have): passed on to the client as said, never a sign of sickness;
- a 401/403 is a session to renew when the caller asked for it (`auth_expiry`);
- everything else is a failure that feeds the backoff: 5xx, 401/403, 429 and every other
  4xx, and every 3xx: the bridge follows no redirect (nothing at the PVS redirects; what
  does is not the PVS, or a PVS gone wrong), so a redirect is no answer at all.

A 429 or 503 may say when to come back (Retry-After): that is a floor under the
backoff's next delay, bounded so that a PVS (or whatever answers in its place) cannot
silence the bridge for longer than `RETRY_AFTER_MAX`.
"""

from __future__ import annotations

import email.utils
import json

from bridge.pvs.answer import Answer

REFUSALS = frozenset({400, 404})
SAYS_WHEN = frozenset({429, 503})  # the statuses whose Retry-After the bridge honours
RETRY_AFTER_MAX = 900.0  # seconds: at most this long on a PVS's word


def answer_problem(answer: Answer, expect_json: bool, auth_expiry: bool = False) -> str | None:
    """Why this answer says the PVS is unwell (None for data and definitive refusals)."""
    if auth_expiry and answer.status in (401, 403):
        return None  # a session that expired: the caller renews it
    if answer.ok:
        if expect_json:
            try:
                json.loads(answer.body)
            except (ValueError, RecursionError):  # nesting deep enough to exhaust the stack
                return f"a body that is not valid JSON ({len(answer.body)} bytes)"
        return None
    if answer.status in REFUSALS:
        return None
    if 300 <= answer.status < 400:
        return f"HTTP {answer.status} (a redirect, not followed)"
    return f"HTTP {answer.status}"


def retry_after(answer: Answer, raw: str | None, now_wall: float) -> float | None:
    """Seconds the PVS asked to be left alone (Retry-After on a 429/503), bounded; else None.

    `raw` is the header as received (replayable headers may not keep it): delta-seconds
    or an HTTP date, RFC 9110 10.2.3.
    """
    if answer.status not in SAYS_WHEN or raw is None:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        seconds = float(raw)
    else:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None  # RFC 9110's dates are GMT; a date without a zone is not one
        seconds = when.timestamp() - now_wall
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)
