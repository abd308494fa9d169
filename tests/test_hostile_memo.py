"""Verdicts on client input are memoised, but never keyed on unbounded client input.

Before: an lru_cache keyed on raw header lines held 256 header sets of up to 185 KB
each (+48 MB for good after 300 requests with distinct headers).
"""

from __future__ import annotations

import asyncio

from bridge.web import hostile
from tests.support import DEVICE_LIST, ServeFactory, Sim, raw_request

HEADERS = 45  # under the parser's MAX_HEADERS, each line under MAX_FIELD


def big_request(n: int) -> bytes:
    """A request whose 45 header lines make about 185 KB, distinct for each `n`."""
    pad = f"{n:08d}".encode() * 500  # 4,000 bytes
    lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, pad) for i in range(HEADERS))
    return f"GET {DEVICE_LIST} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + lines + b"\r\n"


async def test_distinct_huge_header_sets_are_judged_but_never_held(
    simulator: Sim, serve_bridge: ServeFactory
) -> None:
    bridge = await serve_bridge(simulator.url)
    verdicts = hostile._bad_headers
    assert len(big_request(0)) > 180_000
    before = verdicts.held_bytes()
    for start in range(0, 300, 20):
        answers = await asyncio.gather(
            *(raw_request(bridge.port, big_request(n)) for n in range(start, start + 20))
        )
        assert all(answer is not None and answer.status == 200 for answer in answers)
    assert verdicts.held_bytes() - before < 1000  # a header set of 185 KB is never held
    assert verdicts.held_bytes() <= verdicts.entries * verdicts.key_bytes


def test_small_inputs_are_memoised_within_their_bounds() -> None:
    judged: list[str] = []

    def judge(raw: str) -> str | None:
        judged.append(raw)
        return None if raw.startswith("/") else "not a path"

    verdicts = hostile.Verdicts(judge, entries=3, key_bytes=10)
    assert verdicts("/a") is None and verdicts("/a") is None
    assert verdicts("x") == "not a path" and verdicts("x") == "not a path"
    assert judged == ["/a", "x"]  # each judged once
    for n in range(10):
        verdicts(f"/{n}")
    assert len(verdicts.held) == 3  # the oldest give way
    verdicts("/" + "y" * 20)
    verdicts("/" + "y" * 20)
    assert judged.count("/" + "y" * 20) == 2  # too large to hold: judged each time
    assert verdicts.held_bytes() <= 3 * 10
