"""`serve`'s flags, and the config they override (file, then environment, then flags)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bridge import config
from bridge.config import Config, ConfigError

SERVE_EPILOG = (
    "Every configuration key can also be set in the config file or by an environment "
    "variable PVS_BRIDGE_<SECTION>_<KEY> (e.g. PVS_BRIDGE_CACHE_REFRESH=30; lists "
    "comma-separated). Flags beat the environment, which beats the file. "
    "deploy/config.example.toml lists every key with its default."
)


def keyed(text: str, section: str, name: str, shown: str | None = None) -> str:
    """`text`, with the key's default and the environment variable that sets it too."""
    default = config.schema()[section][name].default
    if shown is None:
        shown = ", ".join(default) if isinstance(default, tuple) else f"{default:g}"
    return (
        f"{text} (default {shown}; config {section}.{name}, env {config.env_name(section, name)})"
    )


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.epilog = SERVE_EPILOG
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"TOML config file (default {config.DEFAULT_CONFIG_PATH} if present)",
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help=keyed("address to answer HTTP on (repeatable)", "server", "listen"),
    )
    parser.add_argument(
        "--listen-tls",
        action="append",
        metavar="HOST:PORT",
        help=keyed("address to answer HTTPS on (repeatable)", "server", "listen_tls", "none"),
    )
    parser.add_argument(
        "--listen-ws",
        action="append",
        metavar="HOST:PORT",
        help=keyed(
            "serve the live WebSocket feed here (repeatable; 'none' for no feed listener)",
            "server",
            "listen_ws",
        ),
    )
    add_source_flags(parser)


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """serve's flags for where data comes from and goes to, and how fresh it is."""
    parser.add_argument(
        "--mqtt",
        metavar="URL",
        help=keyed(
            "publish to this MQTT broker with Home Assistant discovery (mqtt://user:pass@host)",
            "mqtt",
            "url",
            "off",
        ),
    )
    parser.add_argument(
        "--upstream",
        metavar="URL",
        help=keyed('the PVS\'s base URL, or "auto"', "upstream", "url", "http://172.27.153.1"),
    )
    parser.add_argument(
        "--refresh",
        type=float,
        metavar="SECONDS",
        help=keyed("DeviceList refresh interval", "cache", "refresh"),
    )
    parser.add_argument(
        "--rate-limit",
        metavar="off|RATE/BURST",
        help="per-client rate limit for requests that must reach the PVS, e.g. 5/30, or off "
        "(default 5/30; config rate_limit.enabled/rate/burst, env PVS_BRIDGE_RATE_LIMIT_RATE, "
        "PVS_BRIDGE_RATE_LIMIT_BURST, PVS_BRIDGE_RATE_LIMIT_ENABLED)",
    )
    parser.add_argument(
        "--max-stale",
        type=float,
        metavar="SECONDS",
        help=keyed("never serve data older than this", "cache", "max_stale"),
    )


def flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Turn serve flags into config overrides (section -> key -> value)."""
    overrides: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        overrides.setdefault(section, {})[key] = value

    if args.listen:
        put("server", "listen", list(args.listen))
    if getattr(args, "listen_tls", None):
        put("server", "listen_tls", list(args.listen_tls))
    if getattr(args, "mqtt", None):
        put("mqtt", "url", args.mqtt)
    if getattr(args, "listen_ws", None):
        put("server", "listen_ws", [item for item in args.listen_ws if item != "none"])
    if args.upstream:
        put("upstream", "url", args.upstream)
    if args.refresh is not None:
        put("cache", "refresh", args.refresh)
    if args.max_stale is not None:
        put("cache", "max_stale", args.max_stale)
    if args.rate_limit:
        if args.rate_limit == "off":
            put("rate_limit", "enabled", False)
        else:
            rate, sep, burst = args.rate_limit.partition("/")
            try:
                put("rate_limit", "rate", float(rate))
                if sep:
                    put("rate_limit", "burst", int(burst))
            except ValueError:
                raise ConfigError(
                    f"--rate-limit: expected off or RATE/BURST, got {args.rate_limit!r}"
                ) from None
            put("rate_limit", "enabled", True)
    return overrides


def load_config(args: argparse.Namespace) -> Config:
    """The config for serve: file (explicit, or the default path if it exists), env, flags."""
    path = args.config
    if path is None and config.DEFAULT_CONFIG_PATH.exists():
        path = config.DEFAULT_CONFIG_PATH
    return config.load(path, overrides=flag_overrides(args))
