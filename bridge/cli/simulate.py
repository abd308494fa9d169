"""`pvs-bridge simulate` and `pvs-bridge demo`: a simulated PVS, alone or behind a bridge."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from bridge import config
from bridge.cli.running import run_async, serve, setup_logging, wait_for_signal
from bridge.config import ConfigError
from bridge.host.tls import self_signed, server_context
from bridge.simulator import server
from bridge.simulator.faults import MODES as FAULT_MODES
from bridge.simulator.faults import FaultError, FaultSettings
from bridge.simulator.server import Simulator, SimulatorOptions

log = logging.getLogger("bridge")


def add_simulate_command(commands: Any) -> None:
    """`pvs-bridge simulate` and its flags."""
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


def add_demo_command(commands: Any) -> None:
    """`pvs-bridge demo` and its flags."""
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


def add_simulator_flags(parser: argparse.ArgumentParser, *, listen: str, latency: float) -> None:
    """What the simulated PVS looks like (shared by simulate and demo)."""
    parser.add_argument(
        "--listen",
        default=listen,
        metavar="HOST:PORT",
        help="where to answer (default %(default)s)",
    )
    parser.add_argument(
        "--inverters", type=int, default=12, help="inverters on the site (default %(default)s)"
    )
    parser.add_argument(
        "--firmware",
        choices=("legacy", "2025"),
        default="legacy",
        help="legacy: the dl_cgi API only; 2025: login, /vars and dl_cgi (default %(default)s)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=latency,
        metavar="S",
        help="seconds a DeviceList takes, other commands a tenth (default %(default)s)",
    )
    parser.add_argument(
        "--listen-ws",
        metavar="HOST:PORT",
        help="serve the PVS's WebSocket live feed here (a real PVS6 uses port 9002; "
        "default: a free loopback port for demo, none for simulate)",
    )
    parser.add_argument(
        "--ws-time",
        choices=("s", "ms"),
        default="s",
        help="the feed's `time` unit (default %(default)s)",
    )
    parser.add_argument(
        "--ws-drop", type=float, default=600.0, metavar="S",
        help="close each feed connection after this many seconds, as the PVS does "
        "(default %(default)s)",
    )  # fmt: skip


def simulator_options(args: argparse.Namespace) -> SimulatorOptions:
    """SimulatorOptions from the simulate/demo flags."""
    if args.inverters < 0 or args.inverters > 10000:
        raise ConfigError(f"--inverters: {args.inverters} is not between 0 and 10000")
    if args.latency < 0:
        raise ConfigError(f"--latency: {args.latency} must not be negative")
    return SimulatorOptions(
        inverters=args.inverters,
        latency=args.latency,
        firmware=args.firmware,
        session_ttl=getattr(args, "session_ttl", 300.0),
        ws_time=args.ws_time,
        ws_drop=args.ws_drop,
    )


def build_simulator(args: argparse.Namespace) -> Simulator:
    """The simulator the flags describe (bad option values are config errors)."""
    try:
        return server.build(simulator_options(args))
    except ValueError as error:
        raise ConfigError(f"simulator: {error}") from None


def feed_address(args: argparse.Namespace) -> tuple[str | None, int | None]:
    """(host, port) of `--listen-ws`, or no feed."""
    if not args.listen_ws:
        return None, None
    return config.parse_hostport(args.listen_ws, "--listen-ws")


def run_simulate(args: argparse.Namespace) -> int:
    """`pvs-bridge simulate`."""
    setup_logging("info")
    return run_async(simulate(args))


async def simulate(args: argparse.Namespace) -> int:
    """Serve a simulated PVS until a signal."""
    host, port = config.parse_hostport(args.listen, "--listen")
    simulator = build_simulator(args)
    context = None
    if args.tls:
        with tempfile.TemporaryDirectory(prefix="pvs-sim-") as scratch:
            context = server_context(*self_signed(Path(scratch), "pvs"))
    ws_host, ws_port = feed_address(args)
    runner, url = await server.start(simulator, host, port, context, ws_host, ws_port)
    try:
        await simulator.faults.apply(FaultSettings.parse({"mode": args.faults}))
    except FaultError as error:
        await runner.cleanup()
        raise ConfigError(f"--faults: {error}") from None
    log.info("fault mode %s; control also at %s/_sim/faults", args.faults, simulator.control_url)
    log.info(
        "simulated PVS (%s firmware, %d inverters) at %s; stats at %s/_sim/stats%s",
        args.firmware,
        args.inverters,
        url,
        url,
        f"; live feed at {simulator.feed_url}" if simulator.feed_url else "",
    )
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """`pvs-bridge demo`."""
    setup_logging("info")
    return run_async(demo(args, os.path.abspath(".demo-state")))


async def demo(args: argparse.Namespace, state_dir: str) -> int:
    """A simulator on a free loopback port and a bridge in front of it."""
    simulator = build_simulator(args)
    ws_host, ws_port = feed_address(args)
    sim_runner, sim_url = await server.start(
        simulator, "127.0.0.1", 0, None, ws_host or "127.0.0.1", ws_port or 0
    )
    cfg = config.load(
        None,
        environ={},
        overrides={
            "server": {
                "listen": [args.listen],
                "listen_ws": [args.bridge_ws],
                "state_dir": state_dir,
            },
            "upstream": {"url": sim_url, "ws_url": simulator.feed_url or "off"},
            "cache": {"refresh": 15.0},
        },
    )

    def show(urls: list[str]) -> None:
        banner = demo_banner(urls[0], sim_url, simulator, args.firmware)
        print(
            banner + f"  live feed:      ws://{args.bridge_ws}/  and  {urls[0]}/live\n", flush=True
        )

    try:
        return await serve(cfg, ready=show)
    finally:
        await sim_runner.cleanup()


def demo_banner(base: str, sim_url: str, simulator: Simulator, firmware: str) -> str:
    """What the demo tells a person to open."""
    lines = [
        "",
        "pvs-bridge demo is running (Ctrl-C to stop)",
        f"  simulated PVS:  {sim_url}  (stats: {sim_url}/_sim/stats)",
        f"  PVS controls:   {simulator.control_url}/_sim/faults  (stays up while the PVS is down)",
        f"  bridge:         {base}/",
        f"  DeviceList:     {base}/cgi-bin/dl_cgi?Command=DeviceList",
        f"  supervisor:     {base}/cgi-bin/dl_cgi/supervisor/info",
        f"  health:         {base}/health",
        f"  metrics:        {base}/metrics",
        f"  refused write:  {base}/cgi-bin/dl_cgi?Command=GridProfileRefresh",
    ]
    if simulator.feed_url:
        lines.append(f"  PVS live feed:  {simulator.feed_url}")
    if firmware == "2025":
        lines.append(
            f"  2025 API:       {base}/vars?match=livedata  (after GET {base}/auth?login "
            f"with Basic ssm_owner:{simulator.options.serial[-5:]})"
        )
    return "\n".join(lines) + "\n"
