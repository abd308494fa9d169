"""Load and validate the bridge's configuration: TOML file, then environment, then flags.

Every key lives in SCHEMA with its type and default, so the file, the environment
variables (`PVS_BRIDGE_<SECTION>_<KEY>`) and `deploy/config.example.toml` all describe
the same set. A bad value stops start-up with one line that names the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "PVS_BRIDGE_"
DEFAULT_CONFIG_PATH = Path("/etc/pvs-bridge/config.toml")


class ConfigError(Exception):
    """A configuration value is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default and allowed range."""

    kind: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


DEFAULT_WRITE_COMMANDS = (
    "GridProfileRefresh",
    "SetCellPurchased",
    "StartDiscovery",
    "CancelDiscovery",
)

SCHEMA: dict[str, dict[str, Key]] = {
    "server": {
        "listen": Key(list, ["0.0.0.0:80", "0.0.0.0:8080"]),
        "listen_tls": Key(list, []),
        "tls_cert": Key(str, ""),
        "tls_key": Key(str, ""),
        "state_dir": Key(str, "/var/lib/pvs-bridge"),
        "log_level": Key(str, "info", choices=("debug", "info", "warning", "error")),
        "summary_interval": Key(float, 60.0, minimum=0),
        "shutdown_grace": Key(float, 5.0, minimum=0, maximum=60),
        "max_request_bytes": Key(int, 4096, minimum=256, maximum=65536),
    },
    "upstream": {
        "url": Key(str, "http://172.27.153.1"),
        "interface": Key(str, ""),
        "connect_timeout": Key(float, 5.0, minimum=0.1, maximum=120),
        "timeout": Key(float, 30.0, minimum=0.1, maximum=600),
        "devicelist_timeout": Key(float, 120.0, minimum=0.1, maximum=600),
        "queue_limit": Key(int, 64, minimum=1, maximum=10000),
        "backoff_initial": Key(float, 2.0, minimum=0.01, maximum=3600),
        "backoff_max": Key(float, 300.0, minimum=0.01, maximum=86400),
        "breaker_threshold": Key(int, 3, minimum=1, maximum=1000),
        "verify_tls": Key(bool, False),
        "tls_fingerprint": Key(str, ""),
        "firmware": Key(str, "auto", choices=("auto", "legacy", "2025")),
        "password": Key(str, ""),
        "vars_interval": Key(float, 5.0, minimum=0, maximum=3600),
    },
    "cache": {
        "refresh": Key(float, 60.0, minimum=0.05, maximum=86400),
        "idle_after": Key(float, 300.0, minimum=0, maximum=86400),
        "max_stale": Key(float, 900.0, minimum=0, maximum=604800),
        "max_entries": Key(int, 256, minimum=1, maximum=100000),
        "ttl_constant": Key(float, 600.0, minimum=0, maximum=86400),
        "ttl_status": Key(float, 30.0, minimum=0, maximum=86400),
        "ttl": Key(dict, {}),
        "warm_start": Key(bool, True),
    },
    "rate_limit": {
        "enabled": Key(bool, True),
        "rate": Key(float, 5.0, minimum=0.001, maximum=1e6),
        "burst": Key(int, 30, minimum=1, maximum=1_000_000),
        "max_clients": Key(int, 4096, minimum=1, maximum=1_000_000),
    },
    "cors": {
        "origins": Key(list, ["*"]),
    },
    "writes": {
        "enabled": Key(bool, False),
        "token": Key(str, ""),
        "commands": Key(list, list(DEFAULT_WRITE_COMMANDS)),
    },
    "clients": {
        "trusted_lan": Key(bool, False),
        "session_ttl": Key(float, 300.0, minimum=1, maximum=86400),
        "max_sessions": Key(int, 256, minimum=1, maximum=100000),
    },
}


@dataclass
class Config:
    """Validated configuration: `config.section["key"]` after load()."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    @property
    def upstream_url(self) -> str:
        """The configured upstream base URL ("auto" is resolved by interfaces)."""
        return str(self.values["upstream"]["url"])


def defaults() -> dict[str, dict[str, Any]]:
    """A fresh copy of every default value."""
    return {
        section: {name: _copy(key.default) for name, key in keys.items()}
        for section, keys in SCHEMA.items()
    }


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides `section.key`."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def load(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read the TOML file (if any), apply environment and flag overrides, validate."""
    values = defaults()
    if path is not None:
        try:
            with path.open("rb") as handle:
                document = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        _merge_document(values, document, source=str(path))
    env = os.environ if environ is None else environ
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            raw = env.get(env_name(section, name))
            if raw is not None:
                values[section][name] = _from_text(raw, key, env_name(section, name))
    for section, items in (overrides or {}).items():
        for name, value in items.items():
            values[section][name] = _coerce(value, SCHEMA[section][name], f"{section}.{name}")
    _check_combinations(values)
    return Config(values)


def _merge_document(
    values: dict[str, dict[str, Any]], document: dict[str, Any], source: str
) -> None:
    for section, items in document.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if not isinstance(items, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for name, value in items.items():
            key = SCHEMA[section].get(name)
            if key is None:
                raise ConfigError(f"{source}: unknown key {section}.{name}")
            values[section][name] = _coerce(value, key, f"{section}.{name}")


def _from_text(raw: str, key: Key, where: str) -> Any:
    """Parse an environment variable's text into the key's type."""
    text = raw.strip()
    if key.kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if key.kind is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    if key.kind is dict:
        table: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"{where}: expected NAME=VALUE pairs, got {item!r}")
            table[name.strip()] = value.strip()
        return _coerce(table, key, where)
    return _coerce(text, key, where)


def _coerce(value: Any, key: Key, where: str) -> Any:
    """Check one value against its key, converting numbers given as text."""
    if key.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if key.kind in (int, float):
        number = _number(value, key.kind, where)
        if key.minimum is not None and number < key.minimum:
            raise ConfigError(f"{where}: {number} is below the minimum {key.minimum:g}")
        if key.maximum is not None and number > key.maximum:
            raise ConfigError(f"{where}: {number} is above the maximum {key.maximum:g}")
        return number
    if key.kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if key.choices and value not in key.choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(key.choices)}")
        return value
    if key.kind is list:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    if key.kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {name: _number(item, float, f"{where}.{name}") for name, item in value.items()}
    raise ConfigError(f"{where}: unsupported type")  # pragma: no cover - schema bug


def _number(value: Any, kind: type, where: str) -> float | int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value) if kind is float else int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if kind is float and not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value) if kind is float else value


def parse_hostport(text: str, where: str) -> tuple[str, int]:
    """Split `HOST:PORT` (or `[v6]:PORT`) into its parts, checking the port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} out of range in {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, port


def _check_combinations(values: dict[str, dict[str, Any]]) -> None:
    server, upstream, cache, writes = (
        values["server"],
        values["upstream"],
        values["cache"],
        values["writes"],
    )
    if not server["listen"] and not server["listen_tls"]:
        raise ConfigError("server.listen: at least one address is needed")
    for item in server["listen"]:
        parse_hostport(item, "server.listen")
    for item in server["listen_tls"]:
        parse_hostport(item, "server.listen_tls")
    if bool(server["tls_cert"]) != bool(server["tls_key"]):
        raise ConfigError("server.tls_cert: tls_cert and tls_key must be given together")
    url = upstream["url"]
    if url != "auto":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"upstream.url: expected http(s)://HOST[:PORT] or auto, got {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ConfigError(f"upstream.url: give only scheme, host and port, got {url!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ConfigError(f"upstream.url: bad port in {url!r}") from None
    if upstream["backoff_max"] < upstream["backoff_initial"]:
        raise ConfigError("upstream.backoff_max: must be at least upstream.backoff_initial")
    if writes["enabled"] and len(writes["token"]) < 16:
        raise ConfigError(
            "writes.token: writes are enabled, so a token of 16+ characters is needed"
        )
    if 0 < cache["max_stale"] < cache["refresh"]:
        raise ConfigError("cache.max_stale: must be 0 (off) or at least cache.refresh")
    origins = values["cors"]["origins"]
    for origin in origins:
        if origin not in {"*", "null"} and "://" not in origin:
            raise ConfigError(f"cors.origins: {origin!r} is not '*', 'null' or scheme://host")
