"""The `pvs-bridge` command: serve, simulate, demo, check."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bridge import __version__
from bridge.cli.flags import add_serve_flags, flag_overrides, load_config
from bridge.cli.running import run_async, serve, setup_logging
from bridge.cli.simulate import add_demo_command, add_simulate_command
from bridge.config import DEFAULT_CONFIG_PATH, ConfigError, load

__all__ = ["build_parser", "flag_overrides", "main", "serve"]

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m bridge`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_CONFIG
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        for problem in error.problems:
            print(f"pvs-bridge: config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pvs-bridge", description="A safe, caching bridge to a SunPower PVS."
    )
    parser.add_argument("--version", action="version", version=f"pvs-bridge {__version__}")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the bridge")
    add_serve_flags(serve)
    serve.set_defaults(handler=run_serve)

    add_simulate_command(commands)
    add_demo_command(commands)
    add_check_command(commands)
    return parser


def add_check_command(commands: Any) -> None:
    """`pvs-bridge check` and its flags."""
    check = commands.add_parser(
        "check",
        help="diagnose an installation",
        description="One line per fact: the PVS-side interface, the routes, forwarding, "
        "the bridge's /health and the PVS (through the bridge when it runs). Exit 1 on "
        "any problem.",
    )
    check.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"the bridge's config file (default {DEFAULT_CONFIG_PATH} if present)",
    )
    check.add_argument(
        "--bridge",
        metavar="URL",
        default=None,
        help="the bridge to ask, e.g. http://pvs-bridge.local:8080 (default: the first "
        "server.listen address of the config, on this machine)",
    )
    check.set_defaults(handler=run_check)


def run_serve(args: argparse.Namespace) -> int:
    """`pvs-bridge serve`."""
    cfg = load_config(args)
    setup_logging(cfg.server.log_level, cfg.server.log_burst)
    return run_async(serve(cfg))


def run_check(args: argparse.Namespace) -> int:
    """`pvs-bridge check`."""
    from bridge.host.check import run

    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    return run_async(run(load(path), bridge=args.bridge))
