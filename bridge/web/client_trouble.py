"""What misbehaving clients did, counted for the summary line instead of logged one by one.

A malformed request, a client hanging up halfway through its body, a request head too
slow to arrive, a connection closed or refused at a cap: each is the client's problem,
not the bridge's, and under attack there are thousands. So each is logged at debug only
and counted here; the periodic summary line (server.summary_interval) says how many.
"""

from __future__ import annotations

from collections import Counter

# What each kind is called in the summary line, in the order shown.
KINDS = {
    "malformed": "malformed requests",
    "hung_up": "hung up mid-request",
    "slow_head": "request heads too slow",
    "idle_closed": "idle connections closed at a cap",
    "refused": "connections refused at a cap",
}


class ClientTrouble:
    """Counts by kind (one of KINDS), since start and since the last summary."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._reported: Counter[str] = Counter()

    def count(self, kind: str) -> None:
        self.counts[kind] += 1

    def summary_since_last(self) -> str | None:
        """ "client trouble: malformed requests 300, ..." since the last call, or None."""
        delta = self.counts - self._reported
        self._reported = self.counts.copy()
        if not delta:
            return None
        parts = ", ".join(f"{label} {delta[kind]}" for kind, label in KINDS.items() if delta[kind])
        return f"client trouble: {parts}"
