"""Telling systemd how the service is (sd_notify(3)), without a dependency.

The unit is `Type=notify` with `WatchdogSec=`: systemd waits for READY=1 before it
counts the bridge as started, shows the STATUS= line in `systemctl status`, and restarts
the bridge when no WATCHDOG=1 comes for the watchdog interval. The pings come from a task
on the event loop, so a loop that is wedged (a handler that never yields, a blocking
call) stops them and gets the bridge restarted. Outside systemd ($NOTIFY_SOCKET unset)
every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Datagrams to $NOTIFY_SOCKET (a path, or an abstract address written "@name")."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog = watchdog_interval(environ)

    def notify(self, *fields: str) -> bool:
        """Send "KEY=value" fields in one datagram; False when not under systemd or it failed."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as error:
            log.debug("sd_notify to %s failed: %s", self.address, error)
            return False
        return True

    @contextlib.asynccontextmanager
    async def watchdog_pings(self, status: Callable[[], str] | None = None) -> AsyncIterator[None]:
        """WATCHDOG=1 every half watchdog interval, from the event loop, while inside; with
        it STATUS=`status()` whenever that changed (what `systemctl status` shows)."""
        if not self.address or self.watchdog is None:
            yield
            return
        pinging = self._ping_forever(self.watchdog / 2, status)
        task = asyncio.create_task(pinging, name="watchdog")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _ping_forever(self, every: float, status: Callable[[], str] | None) -> None:
        shown = ""
        while True:
            now = status() if status is not None else shown
            if now != shown:
                self.notify("WATCHDOG=1", f"STATUS={now}")
                shown = now
            else:
                self.notify("WATCHDOG=1")
            await asyncio.sleep(every)


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds of $WATCHDOG_USEC when it is meant for this process (sd_watchdog_enabled)."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000
