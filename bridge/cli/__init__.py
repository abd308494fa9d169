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
from bridge.simulator.faults import MODES as FAULT_MODES

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

    simulate = commands.add_parser(
        "simulate",
        help="run a simulated PVS",
        description="A simulated PVS on loopback: the dl_cgi API (and the 2025 API with "
        "--firmware 2025), its faults and its live feed. It prints where its control "
        "port is: POST /_sim/faults there switches fault modes at run time.",
    )
    add_simulator_flags(simulate, listen="127.0.0.1:8081", latency=2.0)
    simulate.add_argument(
        "--session-ttl",
        type=float,
        default=300.0,
        metavar="S",
        help="2025 firmware: seconds a login session lives (default %(default)s)",
    )
    simulate.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a self-signed certificate, like the PVS",
    )
    simulate.add_argument(
        "--faults", default="ok", metavar="MODE",
        help=f"start in this fault mode, one of {', '.join(FAULT_MODES)} "
        "(default %(default)s; POST /_sim/faults on the control port changes it at run time)",
    )  # fmt: skip
    simulate.set_defaults(handler=run_simulate)

    demo = commands.add_parser(
        "demo",
        help="run a simulator and a bridge on loopback",
        description="A simulated PVS and a bridge in front of it, on loopback. It prints "
        "every address to open, the simulator's control port among them.",
    )
    add_simulator_flags(demo, listen="127.0.0.1:8080", latency=3.0)
    demo.add_argument(
        "--bridge-ws",
        default="127.0.0.1:9002",
        metavar="HOST:PORT",
        help="where the bridge serves the live feed (default %(default)s)",
    )
    demo.set_defaults(handler=run_demo)

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
    return parser


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
