"""The bridge's own sessions for 2025-API clients: random, bounded, expiring.

A client's session is never sent to the PVS; it only says the client logged in with
the PVS's credentials, and holds the `cache=` ids that client defined.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cachetools import TTLCache

from bridge.clock import Clock
from bridge.web.vars_query import VarsQuery


@dataclass
class ClientSession:
    """One client's login with the bridge, and the cache ids it defined."""

    caches: dict[str, VarsQuery] = field(default_factory=dict)


class ClientSessions:
    """The bridge's own sessions for new-API clients: random, bounded, expiring."""

    def __init__(self, clock: Clock, *, ttl: float, max_sessions: int) -> None:
        self._sessions: TTLCache[str, ClientSession] = TTLCache(
            maxsize=max_sessions, ttl=ttl, timer=clock.monotonic
        )
        self.created = 0

    def create(self) -> str:
        """A new session id, 64 hex characters like the PVS's."""
        token = secrets.token_hex(32)
        self._sessions[token] = ClientSession()
        self.created += 1
        return token

    def get(self, token: str | None) -> ClientSession | None:
        """The live session for this id, if any."""
        if not token:
            return None
        return self._sessions.get(token)

    def drop(self, token: str | None) -> None:
        """End a session (logout)."""
        if token:
            self._sessions.pop(token, None)

    @property
    def live(self) -> int:
        """How many sessions are live."""
        self._sessions.expire()
        return len(self._sessions)
