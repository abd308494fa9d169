"""The log as the service writes it: journald priorities, and a bound on repeated lines.

Under systemd (it sets $JOURNAL_STREAM) every line starts with its syslog priority,
`<3>` to `<7>` (sd-daemon(3)), so `journalctl -p warning` finds the problems; journald
adds its own timestamps. Run by hand, lines are plain with a timestamp.

However many times one kind of line comes (the same logger and message template), at
most server.log_burst of it are written per minute; the rest are counted and reported
once, "N similar lines suppressed", when the minute is over.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping

# sd-daemon(3) prefixes, by logging level (the highest not above the record's).
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7
WINDOW = 60.0  # seconds over which log_burst lines of one kind are written
MAX_KINDS = 4096  # kinds remembered at once: message templates are few, but never grow


def setup(level: str, burst: int, environ: Mapping[str, str] = os.environ) -> logging.Handler:
    """Log to stderr at `level` through the handler returned (journald-aware, bounded)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(environ))
    handler.addFilter(BurstFilter(burst))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler


def formatter(environ: Mapping[str, str]) -> logging.Formatter:
    """Priority-prefixed lines under systemd, timestamped plain lines otherwise."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" in environ:
        return JournalFormatter(fmt)
    return logging.Formatter("%(asctime)s " + fmt)


def priority(levelno: int) -> int:
    """The syslog priority of a logging level."""
    for level, value in PRIORITIES:
        if levelno >= level:
            return value
    return DEBUG_PRIORITY


class JournalFormatter(logging.Formatter):
    """Each line of a record (a traceback's too) prefixed with the record's priority:
    journald reads the prefix of every line it is sent as a separate entry."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class BurstFilter(logging.Filter):
    """At most `burst` records of one kind (logger, level, template) per WINDOW."""

    def __init__(self, burst: int, now: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.now = now
        # kind -> [window start, records passed in it, records dropped in it]
        self._kinds: dict[tuple[str, int, str], list[float]] = {}
        self._dropping: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.now()
        if self._dropping:
            self._report_ended(now)
        kind = (record.name, record.levelno, str(record.msg))
        window = self._kinds.get(kind)
        if window is None or now - window[0] >= WINDOW:
            if len(self._kinds) >= MAX_KINDS:
                self._kinds.clear()
                self._dropping.clear()
            window = self._kinds[kind] = [now, 0, 0]
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        self._dropping.add(kind)
        return False

    def _report_ended(self, now: float) -> None:
        """One line for each kind whose window with dropped records is over."""
        ended = [kind for kind in self._dropping if now - self._kinds[kind][0] >= WINDOW]
        # Forgotten before logging: the report passes through this filter too.
        reports = [(kind, int(self._kinds.pop(kind)[2])) for kind in ended]
        self._dropping.difference_update(ended)
        for (name, levelno, template), dropped in reports:
            logging.getLogger(name).log(
                levelno, "%d similar lines suppressed in the last minute: %s", dropped, template
            )
