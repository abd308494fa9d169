"""`--help` that helps: every option says its default, serve's say their config key and
environment variable, and --faults lists the simulator's modes."""

from __future__ import annotations

import argparse

import pytest

from bridge.cli import build_parser
from bridge.config import env_name, schema
from bridge.simulator.faults import MODES

# Options whose help needs no default: switches, and --config (it names its own).
NO_DEFAULT = {"--help", "--tls", "--config", "--version"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


@pytest.mark.parametrize("command", ["serve", "simulate", "demo", "check"])
def test_every_option_has_help_with_its_default(command: str) -> None:
    parser = subcommands()[command]
    assert parser.description or command == "serve"
    for action in parser._actions:
        flag = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help, f"{command} {flag} has no help"
        if flag not in NO_DEFAULT:
            assert "default" in action.help, f"{command} {flag}: {action.help}"


def test_serve_flags_name_their_config_key_and_environment_variable() -> None:
    parser = subcommands()["serve"]
    text = parser.format_help()
    for section, name in [
        ("server", "listen"),
        ("server", "listen_tls"),
        ("server", "listen_ws"),
        ("upstream", "url"),
        ("cache", "refresh"),
        ("cache", "max_stale"),
        ("mqtt", "url"),
    ]:
        assert name in schema()[section]
        assert f"{section}.{name}" in text
        assert env_name(section, name) in text.replace("\n", "").replace(" ", "")
    assert "PVS_BRIDGE_<SECTION>_<KEY>" in text


def test_faults_help_lists_every_mode() -> None:
    text = " ".join(subcommands()["simulate"].format_help().split())
    for mode in MODES:
        assert f" {mode}," in text or f" {mode} (" in text, mode
