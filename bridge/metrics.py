"""Counters for /metrics (Prometheus text format) and the once-a-minute log summary."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

log = logging.getLogger("bridge.summary")


class Metrics:
    """Client-side counters; the upstream and cache keep their own and are read at render."""

    def __init__(self) -> None:
        self.responses: Counter[tuple[int, str]] = Counter()
        self._logged: Counter[str] = Counter()

    def count_response(self, status: int, cache_state: str) -> None:
        """One proxied answer, by status and X-Cache (bounded: few statuses, four states)."""
        self.responses[(status, cache_state)] += 1

    def summary_since_last(self) -> str | None:
        """One line of what happened since the last call, or None when nothing did."""
        by_state: Counter[str] = Counter()
        for (status, state), count in self.responses.items():
            by_state[state] += count
            if status >= 400:
                by_state["errors"] += count
        delta = by_state - self._logged
        self._logged = by_state
        if not delta:
            return None
        parts = ", ".join(f"{name} {count}" for name, count in sorted(delta.items()))
        return f"served {delta.total() - delta['errors']} answers ({parts})"


def render(families: Iterable[tuple[str, str, str, list[tuple[dict[str, str], float]]]]) -> str:
    """Prometheus text exposition: (name, type, help, [(labels, value), ...]) per family."""
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
