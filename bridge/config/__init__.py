"""The bridge's configuration: typed sections (`sections`), loading (`loader`), cross-key rules."""

from __future__ import annotations

from pathlib import Path

from bridge.config.checks import parse_hostport
from bridge.config.errors import ConfigError
from bridge.config.loader import ENV_PREFIX, Key, env_name, load, schema
from bridge.config.sections import (
    SECTIONS,
    CacheConfig,
    ClientsConfig,
    Config,
    CorsConfig,
    MqttConfig,
    RateLimitConfig,
    ServerConfig,
    UpstreamConfig,
    WritesConfig,
)

DEFAULT_CONFIG_PATH = Path("/etc/pvs-bridge/config.toml")

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "SECTIONS",
    "CacheConfig",
    "ClientsConfig",
    "Config",
    "ConfigError",
    "CorsConfig",
    "Key",
    "MqttConfig",
    "RateLimitConfig",
    "ServerConfig",
    "UpstreamConfig",
    "WritesConfig",
    "env_name",
    "load",
    "parse_hostport",
    "schema",
]
