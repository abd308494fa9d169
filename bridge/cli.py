"""The `pvs-bridge` command: serve, simulate, demo, check."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge import __version__, config
from bridge.config import Config, ConfigError

log = logging.getLogger("bridge")

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
    _add_serve_flags(serve)
    serve.set_defaults(handler=run_serve)

    simulate = commands.add_parser("simulate", help="run a simulated PVS")
    simulate.add_argument("--listen", default="127.0.0.1:8081", metavar="HOST:PORT")
    simulate.add_argument("--inverters", type=int, default=12)
    simulate.add_argument("--firmware", choices=("legacy", "2025"), default="legacy")
    simulate.add_argument(
        "--latency",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds a DeviceList takes (other commands a tenth)",
    )
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
    demo.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    demo.add_argument("--inverters", type=int, default=12)
    demo.add_argument("--latency", type=float, default=3.0, metavar="S")
    demo.add_argument("--firmware", choices=("legacy", "2025"), default="legacy")
    demo.set_defaults(handler=run_demo)

    check = commands.add_parser("check", help="diagnose an installation")
    check.add_argument("--config", type=Path, default=None)
    check.set_defaults(handler=run_check)
    return parser


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"TOML config file (default {config.DEFAULT_CONFIG_PATH} if present)",
    )
    parser.add_argument(
        "--listen", action="append", metavar="HOST:PORT", help="address to listen on (repeatable)"
    )
    parser.add_argument(
        "--listen-tls", action="append", metavar="HOST:PORT", help="listen with TLS (repeatable)"
    )
    parser.add_argument("--upstream", metavar="URL", help='PVS base URL, or "auto"')
    parser.add_argument(
        "--refresh", type=float, metavar="SECONDS", help="DeviceList refresh interval"
    )
    parser.add_argument(
        "--rate-limit", metavar="off|RATE/BURST", help="per-client rate limit, e.g. 5/30, or off"
    )
    parser.add_argument(
        "--max-stale", type=float, metavar="SECONDS", help="never serve data older than this"
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


def setup_logging(level: str) -> None:
    """Log to stderr; journald adds its own timestamps, so omit ours under systemd."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def run_async(main_coroutine: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (faster on a Pi), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_coroutine)
    result: int = uvloop.run(main_coroutine)
    return result


def run_serve(args: argparse.Namespace) -> int:
    """`pvs-bridge serve`."""
    cfg = load_config(args)
    setup_logging(cfg.server.log_level)
    return run_async(serve(cfg))


async def serve(cfg: Config, ready: Callable[[list[str]], None] | None = None) -> int:
    """Run the bridge until SIGTERM/SIGINT, then shut down within the grace period."""
    from bridge.app import create_app
    from bridge.web.runner import make_runner

    app = create_app(cfg)
    runner = make_runner(app, cfg.server)
    await runner.setup()
    urls: list[str] = []
    try:
        for item in cfg.server.listen:
            host, port = config.parse_hostport(item, "server.listen")
            site = web.TCPSite(runner, host, port, reuse_address=True)
            try:
                await site.start()
            except OSError as error:
                log.error("cannot listen on %s: %s", item, error.strerror or error)
                return 1
            urls.append(f"http://{item}")
        if cfg.server.listen_tls:
            from bridge.host.tls import context_from_config

            context = context_from_config(cfg.server)
            for item in cfg.server.listen_tls:
                host, port = config.parse_hostport(item, "server.listen_tls")
                site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=context)
                try:
                    await site.start()
                except OSError as error:
                    log.error("cannot listen on %s: %s", item, error.strerror or error)
                    return 1
                urls.append(f"https://{item}")
        log.info(
            "pvs-bridge %s serving %s for PVS %s", __version__, ", ".join(urls), cfg.upstream.url
        )
        if ready is not None:
            ready(urls)
        await _wait_for_signal()
        log.info("shutting down")
    finally:
        await runner.cleanup()
    return 0


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run_simulate(args: argparse.Namespace) -> int:
    """`pvs-bridge simulate`."""
    setup_logging("info")
    return run_async(simulate(args))


def simulator_options(args: argparse.Namespace) -> Any:
    """SimulatorOptions from the simulate/demo flags."""
    from bridge.simulator.server import SimulatorOptions

    if args.inverters < 0 or args.inverters > 10000:
        raise ConfigError(f"--inverters: {args.inverters} is not between 0 and 10000")
    if args.latency < 0:
        raise ConfigError(f"--latency: {args.latency} must not be negative")
    options = SimulatorOptions(
        inverters=args.inverters, latency=args.latency, firmware=args.firmware
    )
    if hasattr(args, "session_ttl"):
        options.session_ttl = args.session_ttl
    return options


async def simulate(args: argparse.Namespace) -> int:
    """Serve a simulated PVS until a signal."""
    from bridge.simulator import server

    host, port = config.parse_hostport(args.listen, "--listen")
    simulator = server.build(simulator_options(args))
    context = None
    if getattr(args, "tls", False):
        import tempfile

        from bridge.host.tls import self_signed, server_context

        with tempfile.TemporaryDirectory(prefix="pvs-sim-") as scratch:
            context = server_context(*self_signed(Path(scratch), "pvs"))
    runner, url = await server.start(simulator, host, port, context)
    from bridge.simulator.faults import FaultError, FaultSettings

    try:
        await simulator.faults.apply(FaultSettings.parse({"mode": args.faults}))
    except FaultError as error:
        await runner.cleanup()
        raise ConfigError(f"--faults: {error}") from None
    log.info("fault mode %s; control also at %s/_sim/faults", args.faults, simulator.control_url)
    log.info(
        "simulated PVS (%s firmware, %d inverters) at %s; stats at %s/_sim/stats",
        args.firmware,
        args.inverters,
        url,
        url,
    )
    try:
        await _wait_for_signal()
    finally:
        await runner.cleanup()
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """`pvs-bridge demo`."""
    setup_logging("info")
    args.state_dir = os.path.abspath(".demo-state")
    return run_async(demo(args))


async def demo(args: argparse.Namespace) -> int:
    """A simulator on a free loopback port and a bridge in front of it."""
    from bridge.simulator import server

    simulator = server.build(simulator_options(args))
    sim_runner, sim_url = await server.start(simulator, "127.0.0.1", 0)
    state_dir: str = args.state_dir
    cfg = config.load(
        None,
        environ={},
        overrides={
            "server": {"listen": [args.listen], "state_dir": state_dir},
            "upstream": {"url": sim_url},
            "cache": {"refresh": 15.0},
        },
    )

    def show(urls: list[str]) -> None:
        base = urls[0]
        print(
            "\npvs-bridge demo is running (Ctrl-C to stop)\n"
            f"  simulated PVS:  {sim_url}  (stats: {sim_url}/_sim/stats)\n"
            f"  bridge:         {base}/\n"
            f"  DeviceList:     {base}/cgi-bin/dl_cgi?Command=DeviceList\n"
            f"  supervisor:     {base}/cgi-bin/dl_cgi/supervisor/info\n"
            f"  health:         {base}/health\n"
            f"  metrics:        {base}/metrics\n"
            f"  refused write:  {base}/cgi-bin/dl_cgi?Command=GridProfileRefresh\n"
            + (
                f"  2025 API:       {base}/vars?match=livedata  (after GET {base}/auth?login "
                f"with Basic ssm_owner:{simulator.options.serial[-5:]})\n"
                if args.firmware == "2025"
                else ""
            ),
            flush=True,
        )

    try:
        return await serve(cfg, ready=show)
    finally:
        await sim_runner.cleanup()


def run_check(args: argparse.Namespace) -> int:
    """`pvs-bridge check`."""
    from bridge.host.check import run

    path = args.config
    if path is None and config.DEFAULT_CONFIG_PATH.exists():
        path = config.DEFAULT_CONFIG_PATH
    return run_async(run(config.load(path)))
