"""The broker named by `mqtt.url`: where it is, how to log in, and how to name it safely.

`mqtt://[user[:password]@]host[:port]` (port 1883) or `mqtts://...` (TLS, port 8883). The
password is kept for the login only: `display` (logs, /health) never carries credentials.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class Broker:
    """One MQTT broker to connect to."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> Broker:
        """Parse `mqtt.url` (the config loader has checked its scheme and host)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("expected mqtt://[user:pass@]HOST[:PORT] or mqtts://...")
        username = None if parts.username is None else unquote(parts.username)
        password = None if parts.password is None else unquote(parts.password)
        return cls(
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[scheme],
            tls=scheme == "mqtts",
            username=username or None,
            password=password if username else None,
        )

    @property
    def address(self) -> str:
        """`host:port` (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def display(self) -> str:
        """The URL without credentials, for logs and /health."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.address}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The system's default verification for `mqtts`, none for `mqtt`."""
        return ssl.create_default_context() if self.tls else None
