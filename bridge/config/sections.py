"""Every configuration key, as one frozen dataclass per section.

The dataclasses are the schema: each field's type, default and (in its metadata) the
allowed range or choices. The loader, the environment variables and
`deploy/config.example.toml` all follow them, and `config.cache.refrsh` is a mypy error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Never returned, cached or logged: an entry starting with "/" is a variable's full name,
# any other entry a part of a name (the PVS's own Wi-Fi key is readable on the device).
DEFAULT_HIDDEN_VARS = ("/sys/info/wpa_key", "key", "psk", "pass", "secret", "token")
DEFAULT_WRITE_COMMANDS = (
    "GridProfileRefresh",
    "SetCellPurchased",
    "StartDiscovery",
    "CancelDiscovery",
)


def key(
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A field with its default and the bounds the loader checks."""
    meta = {"minimum": minimum, "maximum": maximum, "choices": choices}
    if isinstance(default, Mapping):
        frozen = MappingProxyType(dict(default))
        return field(default_factory=lambda: frozen, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServerConfig:
    """[server]: where clients reach the bridge and what it keeps on disk."""

    listen: tuple[str, ...] = key(("0.0.0.0:80", "0.0.0.0:8080"))
    listen_tls: tuple[str, ...] = key(())
    listen_ws: tuple[str, ...] = key(("0.0.0.0:9002",))
    ws_max_clients: int = key(256, minimum=1, maximum=100000)
    tls_cert: str = key("")
    tls_key: str = key("")
    state_dir: str = key("/var/lib/pvs-bridge")
    log_level: str = key("info", choices=("debug", "info", "warning", "error"))
    summary_interval: float = key(60.0, minimum=0)
    shutdown_grace: float = key(5.0, minimum=0, maximum=60)
    max_request_bytes: int = key(4096, minimum=256, maximum=65536)
    hostnames: tuple[str, ...] = key(())
    keepalive_timeout: float = key(15.0, minimum=1, maximum=3600)
    header_timeout: float = key(10.0, minimum=1, maximum=600)
    max_connections: int = key(1024, minimum=16, maximum=1_000_000)
    max_connections_per_address: int = key(64, minimum=1, maximum=100000)
    client_wait: float = key(30.0, minimum=1, maximum=600)
    log_burst: int = key(20, minimum=1, maximum=100000)


@dataclass(frozen=True)
class UpstreamConfig:
    """[upstream]: the PVS, and how gently it is asked."""

    url: str = key("http://172.27.153.1")
    interface: str = key("")
    connect_timeout: float = key(5.0, minimum=0.1, maximum=120)
    timeout: float = key(30.0, minimum=0.1, maximum=600)
    devicelist_timeout: float = key(120.0, minimum=0.1, maximum=600)
    queue_limit: int = key(64, minimum=1, maximum=10000)
    min_interval: float = key(1.0, minimum=0, maximum=60)
    backoff_initial: float = key(2.0, minimum=0.01, maximum=3600)
    backoff_max: float = key(300.0, minimum=0.01, maximum=86400)
    breaker_threshold: int = key(3, minimum=1, maximum=1000)
    verify_tls: bool = key(False)
    tls_fingerprint: str = key("")
    firmware: str = key("auto", choices=("auto", "legacy", "2025"))
    password: str = key("")
    vars_interval: float = key(5.0, minimum=0, maximum=3600)
    ws_url: str = key("")
    ws_silence: float = key(90.0, minimum=1, maximum=3600)
    ws_enable: bool = key(True)
    max_body_bytes: int = key(8 * 1024 * 1024, minimum=65536, maximum=1 << 30)
    after_timeout: float = key(30.0, minimum=0, maximum=3600)
    daily_budget: int = key(5000, minimum=100, maximum=10_000_000)


@dataclass(frozen=True)
class CacheConfig:
    """[cache]: how long answers stay fresh and how old they may ever be."""

    refresh: float = key(60.0, minimum=0.05, maximum=86400)
    idle_after: float = key(300.0, minimum=0, maximum=86400)
    max_stale: float = key(900.0, minimum=0, maximum=604800)
    max_entries: int = key(256, minimum=1, maximum=100000)
    ttl_constant: float = key(600.0, minimum=0, maximum=86400)
    ttl_status: float = key(30.0, minimum=0, maximum=86400)
    ttl: Mapping[str, float] = key({})
    warm_start: bool = key(True)
    refresh_night: float = key(300.0, minimum=0.05, maximum=86400)


@dataclass(frozen=True)
class RateLimitConfig:
    """[rate_limit]: how many PVS-bound requests one client address may send."""

    enabled: bool = key(True)
    rate: float = key(5.0, minimum=0.001, maximum=1e6)
    burst: int = key(30, minimum=1, maximum=1_000_000)
    max_clients: int = key(4096, minimum=1, maximum=1_000_000)
    max_wait: float = key(5.0, minimum=0, maximum=60)


@dataclass(frozen=True)
class CorsConfig:
    """[cors]: which browser origins may read the answers."""

    origins: tuple[str, ...] = key(("*",))
    api_origins: tuple[str, ...] = key(())


@dataclass(frozen=True)
class WritesConfig:
    """[writes]: commands that change the PVS (off unless enabled, then token-protected)."""

    enabled: bool = key(False)
    token: str = key("")
    commands: tuple[str, ...] = key(DEFAULT_WRITE_COMMANDS)


@dataclass(frozen=True)
class ClientsConfig:
    """[clients]: the 2025 API's client logins."""

    trusted_lan: bool = key(False)
    session_ttl: float = key(300.0, minimum=1, maximum=86400)
    max_sessions: int = key(256, minimum=1, maximum=100000)
    max_sessions_per_address: int = key(8, minimum=1, maximum=1000)
    hidden_vars: tuple[str, ...] = key(DEFAULT_HIDDEN_VARS)
    advertise_2025_build: bool = key(True)


@dataclass(frozen=True)
class MqttConfig:
    """[mqtt]: publish the site to an MQTT broker, with Home Assistant discovery."""

    url: str = key("")
    base_topic: str = key("pvs-bridge")
    discovery_prefix: str = key("homeassistant")
    live_interval: float = key(5.0, minimum=0.5, maximum=3600)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; each module takes the section it needs."""

    server: ServerConfig = field(default_factory=ServerConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    writes: WritesConfig = field(default_factory=WritesConfig)
    clients: ClientsConfig = field(default_factory=ClientsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)


SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "upstream": UpstreamConfig,
    "cache": CacheConfig,
    "rate_limit": RateLimitConfig,
    "cors": CorsConfig,
    "writes": WritesConfig,
    "clients": ClientsConfig,
    "mqtt": MqttConfig,
}
