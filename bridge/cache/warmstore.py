"""Warm start: the last good DeviceList survives a restart, so the bridge serves at once.

Written when the bridge stops and at most every SAVE_EVERY seconds while it runs (a
power cut should not lose everything), never per request: the Pi's SD card is not a
log. The file goes in `server.state_dir`, only if that directory exists (systemd's
StateDirectory creates it on the appliance; a developer machine has none), and only
when `cache.warm_start` is on. On start the answer is loaded with its true age, from
the wall clock, if it came from the same upstream and is not older than the maximum
staleness; it is then served like any cached answer (Age, X-Cache) until replaced.

A Pi has no battery-backed clock: after a power cut it boots with the time it saved at
shutdown until NTP answers, so data days old could look minutes old. Across a reboot
the stored age is trusted only once the clock is synchronised (systemd-timesyncd's
flag file); within one boot, a service restart, it always is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bridge.cache import warm_checks
from bridge.cache.answers import AnswerCache
from bridge.clock import Clock
from bridge.host.statefiles import write_atomically
from bridge.pvs.answer import Answer
from bridge.pvs.requests import DEVICE_LIST

log = logging.getLogger(__name__)

Write = Callable[[Path, bytes], None]

FILE_NAME = "last-devicelist.json"
SAVE_EVERY = 900.0
FORMAT = 1
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
CLOCK_SYNCHRONISED = Path("/run/systemd/timesync/synchronized")


def current_boot() -> str:
    """This boot's id ("" where the kernel does not say)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def clock_synchronised() -> bool:
    """Whether systemd-timesyncd has set the clock from NTP since this boot."""
    return CLOCK_SYNCHRONISED.exists()


class WarmStore:
    """Reads and writes the one file; knows which answer it wrote last."""

    def __init__(
        self,
        path: Path,
        upstream: str,
        clock: Clock,
        *,
        boot: Callable[[], str] = current_boot,
        synchronised: Callable[[], bool] = clock_synchronised,
        write: Write = write_atomically,
    ) -> None:
        self.path = path
        self.upstream = upstream
        self.clock = clock
        self.boot = boot
        self.synchronised = synchronised
        self.write = write  # atomic and durable (see host.statefiles)
        self.writes = 0
        self._saved: float | None = None  # fetched_wall of the answer on disk

    def load(self, max_stale: float) -> Answer | None:
        """The stored answer, re-timed on this run's monotonic clock, if still usable.

        Checked as a live answer is (see `warm_checks`): anything invalid is ignored with
        one log line, never served, never a crash."""
        try:
            document = warm_checks.document_fields(json.loads(self.path.read_bytes()))
            if document.get("format") != FORMAT or document.get("upstream") != self.upstream:
                return None
            if document.get("boot") != self.boot() and not self.synchronised():
                log.info("warm start: stored before a reboot and the clock is not synced yet")
                return None
            age = self.clock.wall() - warm_checks.number(document, "fetched_wall")
            if not 0 <= age <= max_stale:
                log.info("warm start: stored DeviceList is %.0f s old; not used", age)
                return None
            answer = warm_checks.stored_answer(document, self.clock.monotonic() - age)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as error:
            log.warning("warm start: ignoring %s: %s", self.path, error)
            return None
        self._saved = answer.fetched_wall
        log.info("warm start: serving the DeviceList stored %.0f s ago until the PVS answers", age)
        return answer

    def save(self, answer: Answer | None) -> bool:
        """Write the answer (atomically) unless it is already the one on disk."""
        if answer is None or answer.fetched_wall == self._saved:
            return False
        document: dict[str, Any] = {
            "format": FORMAT,
            "upstream": self.upstream,
            "boot": self.boot(),
            "fetched_wall": answer.fetched_wall,
            "status": answer.status,
            "content_type": answer.content_type,
            "headers": [list(pair) for pair in answer.headers],
            "elapsed": answer.elapsed,
            "body": base64.b64encode(answer.body).decode("ascii"),
        }
        try:
            self.write(self.path, json.dumps(document).encode())
        except OSError as error:
            log.warning("warm start: cannot write %s: %s", self.path, error)
            return False
        self._saved = answer.fetched_wall
        self.writes += 1
        return True


@asynccontextmanager
async def kept_warm(
    state_dir: Path,
    cache: AnswerCache,
    clock: Clock,
    upstream: str,
    loaded: Callable[[Answer], None] = lambda _answer: None,
    write: Write = write_atomically,
) -> AsyncIterator[None]:
    """Load at start, save every SAVE_EVERY seconds and at stop (when state_dir exists).

    `loaded` hears of the stored answer taken into the cache (health learns when the PVS
    last answered, the device reader takes its snapshot: a fresh stored answer costs the
    PVS no request at start).
    """
    # Start-up and stop only: a few small blocking file operations are fine here.
    if not os.path.isdir(state_dir):  # noqa: ASYNC240
        yield
        return
    store = WarmStore(state_dir / FILE_NAME, upstream, clock, write=write)
    answer = store.load(cache.max_stale)
    if answer is not None:
        cache.preload(DEVICE_LIST, answer)
        loaded(answer)
    saver = asyncio.create_task(_save_now_and_then(store, cache), name="warm store")
    try:
        yield
    finally:
        saver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await saver
        store.save(cache.peek(DEVICE_LIST.target))


async def _save_now_and_then(store: WarmStore, cache: AnswerCache) -> None:
    while True:
        await store.clock.sleep(SAVE_EVERY)
        store.save(cache.peek(DEVICE_LIST.target))
