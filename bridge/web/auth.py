"""The write token rule, in one place: `Authorization: Bearer <writes.token>`, compared in
constant time so the token cannot be guessed a character at a time."""

from __future__ import annotations

import hmac


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether the header carries exactly the bearer token (never true for an empty token)."""
    if not authorization or not token:
        return False
    return hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode())
