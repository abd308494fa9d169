"""The minute history survives a restart: saved to `server.state_dir` when the bridge stops
and every SAVE_EVERY seconds while it runs (a power cut loses at most that), never per
request; reloaded at start.

As the warm store (`warmstore`): only if the directory exists (systemd's StateDirectory
creates it on the appliance), one small JSON file, written atomically (a temporary file,
flushed to the card, renamed over the old one), and not at all when nothing changed since
the last write. A file that cannot be read is ignored with one log line: the curve then
starts empty, the bridge starts all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from bridge.cache.history import MINUTES, History
from bridge.clock import Clock
from bridge.host.statefiles import write_atomically

log = logging.getLogger(__name__)

Write = Callable[[Path, bytes], None]

FILE_NAME = "history.json"
SAVE_EVERY = 900.0
FORMAT = 1


class HistoryStore:
    """Reads and writes the one file of one `History`."""

    def __init__(
        self, path: Path, history: History, clock: Clock, write: Write = write_atomically
    ) -> None:
        self.path = path
        self._write = write
        self.history = history
        self.clock = clock
        self.writes = 0
        self.writing: asyncio.Future[bool] | None = None  # a periodic write in its thread
        self._saved_changes = 0  # history.changes at the last load or write

    def load(self) -> int:
        """Take the stored minutes of the last 48 hours into the history; how many."""
        now = self.clock.wall()
        try:
            document = json.loads(self.path.read_bytes())
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError(f"not a format {FORMAT} history file")
            samples = document.get("samples")
            if not isinstance(samples, list):
                raise ValueError("no samples list")
            taken = self.history.restore(samples, now - MINUTES * 60.0, now + 60.0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, RecursionError) as error:
            log.warning("history: ignoring %s: %s", self.path, error)
            return 0
        self._saved_changes = self.history.changes
        log.info("history: %d minute(s) of the last 48 h reloaded", taken)
        return taken

    def save(self) -> bool:
        """Write the history (atomically) unless it is unchanged since the last write."""
        prepared = self.prepare()
        return prepared is not None and self.write(*prepared)

    def prepare(self) -> tuple[int, bytes] | None:
        """(the history's change count, the file's bytes), or None when nothing changed."""
        changes = self.history.changes
        if changes == self._saved_changes:
            return None
        document = {
            "format": FORMAT,
            "saved": self.clock.wall(),
            "samples": self.history.document(),
        }
        return changes, json.dumps(document, separators=(",", ":")).encode()

    def write(self, changes: int, data: bytes) -> bool:
        """Write `data` atomically and durably (see host.statefiles)."""
        try:
            self._write(self.path, data)
        except OSError as error:
            log.warning("history: cannot write %s: %s", self.path, error)
            return False
        self._saved_changes = changes
        self.writes += 1
        return True


@asynccontextmanager
async def kept_history(
    history: History, state_dir: Path, clock: Clock, write: Write = write_atomically
) -> AsyncIterator[None]:
    """Load at start, save every SAVE_EVERY seconds and at stop (when state_dir exists)."""
    # Start-up and stop only: a few small blocking file operations are fine here.
    if not os.path.isdir(state_dir):  # noqa: ASYNC240
        yield
        return
    store = HistoryStore(state_dir / FILE_NAME, history, clock, write)
    store.load()
    saver = asyncio.create_task(_save_now_and_then(store), name="history store")
    try:
        yield
    finally:
        saver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await saver
        if store.writing is not None:
            await store.writing  # never two writes of the same file at once
        store.save()


async def _save_now_and_then(store: HistoryStore) -> None:
    while True:
        await store.clock.sleep(SAVE_EVERY)
        prepared = store.prepare()  # taken here, in the loop; written in a thread
        if prepared is not None:
            store.writing = asyncio.ensure_future(asyncio.to_thread(store.write, *prepared))
            await asyncio.shield(store.writing)
