"""What the PVS answered, as the bridge keeps and replays it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

# Headers that describe one hop of a connection, never the answer itself (RFC 9110 7.6.1),
# plus the ones the bridge sets anew when it replays an answer, and Location: the bridge
# follows no redirect, and a client must never be sent where the PVS (or whatever answers
# in its place) points.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_REPLAYED = HOP_BY_HOP | {
    "content-length",
    "date",
    "set-cookie",
    "age",
    "content-encoding",
    "location",
}


@dataclass(frozen=True)
class Answer:
    """One upstream answer: status, exact body bytes, and the headers worth replaying."""

    status: int
    body: bytes
    content_type: str | None
    headers: tuple[tuple[str, str], ...] = ()
    fetched_at: float = 0.0  # monotonic clock
    fetched_wall: float = 0.0  # wall clock, for people
    elapsed: float = 0.0  # seconds the upstream took
    cookies: tuple[tuple[str, str], ...] = ()  # what Set-Cookie set (never replayed)
    # Replay headers per (state, age, freshness) second: hits within a second share them.
    header_memo: dict[tuple[str, int, int], tuple[tuple[str, str], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300

    @cached_property
    def replay_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers a replay starts from, content type included (built once per answer)."""
        if self.content_type is None:
            return self.headers
        return (*self.headers, ("Content-Type", self.content_type))


def replayable_headers(raw: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Keep the upstream headers that belong to the answer, in their order."""
    return tuple(
        (name, value)
        for name, value in raw
        if name.lower() not in NOT_REPLAYED and name.lower() != "content-type"
    )
