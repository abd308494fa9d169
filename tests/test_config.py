"""Configuration: file, environment, flags; a bad value stops start-up with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge import config
from bridge.cli import build_parser, flag_overrides
from bridge.config import ConfigError

EXAMPLE = Path(__file__).parent.parent / "deploy" / "config.example.toml"


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[cache]\nrefresh = -1\n", "cache.refresh"),
        ("[cache]\nrefresh = 'soon'\n", "cache.refresh"),
        ("[upstream]\nurl = 'ftp://pvs'\n", "upstream.url"),
        ("[upstream]\nurl = 'http://pvs/cgi-bin'\n", "upstream.url"),
        ("[upstream]\ntimeout_seconds = 3\n", "upstream.timeout_seconds"),
        ("[nonsense]\nx = 1\n", "[nonsense]"),
        ("[server]\nlisten = ['nohost']\n", "server.listen"),
        ("[writes]\nenabled = true\n", "writes.token"),
        ("this is not toml", "invalid TOML"),
    ],
)
def test_bad_config_file_exits_2_with_one_clear_line(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    result = serve("--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pvs-bridge: config error:")
    assert named in lines[0]


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = serve("--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "not found" in result.stderr


def test_bad_environment_value_exits_2_naming_the_variable() -> None:
    result = serve(env={"PVS_BRIDGE_RATE_LIMIT_BURST": "lots"})
    assert result.returncode == 2
    assert "PVS_BRIDGE_RATE_LIMIT_BURST" in result.stderr


def test_bad_rate_limit_flag_exits_2() -> None:
    result = serve("--rate-limit", "fast")
    assert result.returncode == 2
    assert "--rate-limit" in result.stderr


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[cache]\nrefresh = 30\nmax_stale = 600\n[rate_limit]\nburst = 10\n")
    args = build_parser().parse_args(
        ["serve", "--refresh", "45", "--rate-limit", "2/8", "--upstream", "http://127.0.0.1:81"]
    )
    loaded = config.load(
        path,
        environ={"PVS_BRIDGE_CACHE_REFRESH": "20", "PVS_BRIDGE_CACHE_MAX_STALE": "300"},
        overrides=flag_overrides(args),
    )
    assert loaded.cache.refresh == 45.0  # flag beats environment beats file
    assert loaded.cache.max_stale == 300.0  # environment beats file
    assert (loaded.rate_limit.rate, loaded.rate_limit.burst) == (2.0, 8)
    assert loaded.upstream.url == "http://127.0.0.1:81"


def test_rate_limit_off_flag() -> None:
    args = build_parser().parse_args(["serve", "--rate-limit", "off"])
    assert config.load(None, environ={}, overrides=flag_overrides(args)).rate_limit.enabled is False


def test_environment_lists_and_tables() -> None:
    loaded = config.load(
        None,
        environ={
            "PVS_BRIDGE_SERVER_LISTEN": "127.0.0.1:80, 127.0.0.1:8080",
            "PVS_BRIDGE_CACHE_TTL": "Get_Comm=45,Start=3600",
            "PVS_BRIDGE_WRITES_ENABLED": "no",
        },
    )
    assert loaded.server.listen == ("127.0.0.1:80", "127.0.0.1:8080")
    assert loaded.cache.ttl == {"Get_Comm": 45.0, "Start": 3600.0}
    assert loaded.writes.enabled is False


def test_example_config_documents_every_key_with_its_default() -> None:
    import tomllib

    document = tomllib.loads(EXAMPLE.read_text())
    assert set(document) == set(config.schema())
    for section, keys in config.schema().items():
        assert set(document[section]) == set(keys), section
        for name, key in keys.items():
            default = list(key.default) if key.kind is list else key.default
            assert document[section][name] == default, f"{section}.{name}"
    loaded = config.load(EXAMPLE, environ={})
    assert loaded == config.Config()


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[cache]\nrefrsh = 10\n")
    with pytest.raises(ConfigError, match=r"cache\.refrsh"):
        config.load(path, environ={})


def test_every_problem_is_listed_at_once_each_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[cache]\nrefresh = -1\nmax_stale = 'old'\n[upstream]\ntimeout = 0\n")
    result = serve("--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[2].strip() for line in lines] == [
        "cache.refresh",
        "cache.max_stale",
        "upstream.timeout",
    ]
    assert all(line.startswith("pvs-bridge: config error:") for line in lines)


def test_unknown_environment_variable_stops_start_up_with_a_suggestion() -> None:
    result = serve(env={"PVS_BRIDGE_CACHE_REFRSH": "10"})
    assert result.returncode == 2
    assert "PVS_BRIDGE_CACHE_REFRSH" in result.stderr
    assert "did you mean PVS_BRIDGE_CACHE_REFRESH?" in result.stderr


def test_sections_are_typed_and_frozen() -> None:
    import dataclasses

    loaded = config.load(None, environ={})
    assert isinstance(loaded.cache, config.CacheConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.cache.refresh = 1.0  # type: ignore[misc]
