"""`python -m bridge.config FILE`: the check the provisioning runs before touching the Pi."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "deploy" / "config.example.toml"


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )


def test_the_documented_example_is_ok() -> None:
    done = check(str(EXAMPLE))
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "config ok", "")


def test_every_problem_is_printed_and_the_status_is_2(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text(
        "[cache]\nrefresh = -1\n[upstream]\ntimeout_seconds = 3\n[server]\nlog_level = 'loud'\n"
    )
    done = check(str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    problems = done.stderr.splitlines()
    assert len(problems) == 3
    for key in ("cache.refresh", "upstream.timeout_seconds", "server.log_level"):
        assert sum(key in line for line in problems) == 1, (key, problems)


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    done = check(str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert "not found" in done.stderr


def test_the_controllers_environment_is_not_the_pis(tmp_path: Path) -> None:
    good = tmp_path / "config.toml"
    good.write_text("[cache]\nrefresh = 30\n")
    done = check(str(good), env={"PVS_BRIDGE_CACHE_REFRESH": "-5", "PVS_BRIDGE_NOPE": "1"})
    assert (done.returncode, done.stdout.strip()) == (0, "config ok")


def test_usage_without_a_file() -> None:
    done = check()
    assert done.returncode == 2
    assert "usage" in done.stderr
