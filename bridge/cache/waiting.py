"""How long a client waits for the PVS when nothing servable is held: `server.client_wait`.

A client that finds no data young enough to serve waits for the one shared read. A hung
PVS would hold it until the read's timeout (two minutes for a DeviceList), and most
clients give up long before that, without a word of why. So the wait is bounded: past
`client_wait` the client gets a 504 that says the read goes on (with Retry-After), while
the read itself, shared and shielded, runs on and fills the cache for the next client.
"""

from __future__ import annotations

from collections.abc import Awaitable

from bridge.cache.entries import Lookup
from bridge.clock import Clock
from bridge.pvs.errors import UpstreamError


class StillWaiting(UpstreamError):
    """The PVS has not answered within `server.client_wait`; the read goes on."""

    status = 504
    kind = "still_waiting"

    def __init__(self, name: str, waited: float) -> None:
        super().__init__(
            f"the PVS has not answered {name} within {waited:g} s; the read goes on in the "
            "background and its answer will be served from memory: ask again later",
            # Come back after about as long again: by then the read has landed or failed.
            retry_after=waited,
        )


async def within(clock: Clock, seconds: float, name: str, wait: Awaitable[Lookup]) -> Lookup:
    """Await `wait` (a shared, shielded read) for at most `seconds` on `clock`."""
    try:
        async with clock.deadline(seconds):
            return await wait
    except TimeoutError:
        raise StillWaiting(name, seconds) from None
