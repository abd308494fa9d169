"""The TLS listener (`server.listen_tls`) is the one thing a broken certificate or state
directory may turn off: plain HTTP and the live feed keep serving, and `/health` says
that TLS is off and why, rather than the whole bridge refusing to start.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from bridge.config import ConfigError, ServerConfig
from bridge.host.statefiles import StateDir
from bridge.host.tls import context_from_config

log = logging.getLogger(__name__)


@dataclass
class TlsListener:
    """Whether the TLS listener was asked for, whether it listens, and why not."""

    wanted: bool
    listening: bool = False
    reason: str | None = None

    def context(self, server: ServerConfig, state: StateDir) -> ssl.SSLContext | None:
        """The context to listen with, or None (logged, and kept for /health) when there
        is none to be had: the bridge then serves without TLS."""
        try:
            return context_from_config(server, state.write)
        except ConfigError as error:
            self.reason = str(error)
            log.error("TLS listener off, serving plain HTTP only: %s", self.reason)
            return None

    def describe(self) -> dict[str, object]:
        """For /health."""
        return {"wanted": self.wanted, "listening": self.listening, "reason": self.reason}

    def problems(self) -> list[str]:
        """The degraded reason while a wanted TLS listener is off."""
        if self.wanted and self.reason is not None:
            return [f"TLS listener off: {self.reason}"]
        return []
