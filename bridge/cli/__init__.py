"""The `pvs-bridge` command: serve, simulate, demo, check."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bridge import __version__
from bridge.cli.flags import add_serve_flags, flag_overrides, load_config
from bridge.cli.running import run_async, serve, setup_logging
from bridge.cli.simulate import add_simulator_flags, run_demo, run_simulate
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

    simulate = commands.add_parser("simulate", help="run a simulated PVS")
    add_simulator_flags(simulate, listen="127.0.0.1:8081", latency=2.0)
    simulate.add_argument("--session-ttl", type=float, default=300.0, metavar="S")
    simulate.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a self-signed certificate, like the PVS",
    )
    simulate.add_argument(
        "--faults", default="ok", metavar="MODE",
        help="start in this fault mode (POST /_sim/faults changes it at run time)",
    )  # fmt: skip
    simulate.set_defaults(handler=run_simulate)

    demo = commands.add_parser("demo", help="run a simulator and a bridge on loopback")
    add_simulator_flags(demo, listen="127.0.0.1:8080", latency=3.0)
    demo.add_argument(
        "--bridge-ws",
        default="127.0.0.1:9002",
        metavar="HOST:PORT",
        help="where the bridge serves the live feed (default %(default)s)",
    )
    demo.set_defaults(handler=run_demo)

    check = commands.add_parser("check", help="diagnose an installation")
    check.add_argument("--config", type=Path, default=None)
    check.set_defaults(handler=run_check)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    """`pvs-bridge serve`."""
    cfg = load_config(args)
    setup_logging(cfg.server.log_level)
    return run_async(serve(cfg))


def run_check(args: argparse.Namespace) -> int:
    """`pvs-bridge check`."""
    from bridge.host.check import run

    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    return run_async(run(load(path)))
