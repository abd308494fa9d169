"""The bridge's own sessions for 2025-API clients: random, bounded, expiring.

A client's session is never sent to the PVS; it only says the client logged in with
the PVS's credentials, and holds the `cache=` ids that client defined. One address holds
at most `max_per_address` live sessions: a login beyond that replaces the address's own
oldest session, never another address's, so one client logging in over and over (a
restart loop, a client that logs in on every 400) cannot push the others out. All of it
is bounded: `max_sessions` in total, and the per-address index is rebuilt from the live
sessions whenever it names more addresses than sessions may live.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cachetools import TTLCache

from bridge.clock import Clock
from bridge.config import ClientsConfig
from bridge.web.vars_query import VarsQuery


@dataclass
class ClientSession:
    """One client's login with the bridge, and the cache ids it defined."""

    address: str = ""
    caches: dict[str, VarsQuery] = field(default_factory=dict)


class ClientSessions:
    """The bridge's own sessions for new-API clients: random, bounded, expiring."""

    def __init__(
        self, clock: Clock, *, ttl: float, max_sessions: int, max_per_address: int
    ) -> None:
        self._sessions: TTLCache[str, ClientSession] = TTLCache(
            maxsize=max_sessions, ttl=ttl, timer=clock.monotonic
        )
        self.max_sessions = max_sessions
        self.max_per_address = max_per_address
        # address -> its tokens in login order (ended ones are dropped when next looked at)
        self._by_address: dict[str, list[str]] = {}
        self.created = 0
        self.replaced = 0  # sessions ended by a newer login from the same address

    @classmethod
    def from_config(cls, clock: Clock, clients: ClientsConfig) -> ClientSessions:
        """The sessions `[clients]` asks for."""
        return cls(
            clock,
            ttl=clients.session_ttl,
            max_sessions=clients.max_sessions,
            max_per_address=clients.max_sessions_per_address,
        )

    def create(self, address: str) -> str:
        """A new session id for a client at `address`, 64 hex characters like the PVS's."""
        tokens = self._live_tokens(address)
        while len(tokens) >= self.max_per_address:
            self._sessions.pop(tokens.pop(0), None)
            self.replaced += 1
        token = secrets.token_hex(32)
        self._sessions[token] = ClientSession(address)
        tokens.append(token)
        self._by_address[address] = tokens
        self.created += 1
        if len(self._by_address) > self.max_sessions:
            self._reindex()
        return token

    def _live_tokens(self, address: str) -> list[str]:
        return [token for token in self._by_address.pop(address, ()) if token in self._sessions]

    def _reindex(self) -> None:
        """The index from the live sessions only (addresses whose sessions all ended go)."""
        self._sessions.expire()
        index: dict[str, list[str]] = {}
        for token, session in list(self._sessions.items()):
            index.setdefault(session.address, []).append(token)
        self._by_address = index

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

    @property
    def indexed_addresses(self) -> int:
        """How many addresses the per-address index names (bounded: at most max_sessions + 1)."""
        return len(self._by_address)

    @property
    def addresses(self) -> int:
        """How many client addresses hold a live session."""
        self._sessions.expire()
        return len({session.address for session in self._sessions.values()})
