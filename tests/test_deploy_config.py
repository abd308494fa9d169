"""The Ansible role's config.toml: every key settable through bridge_config, checked first.

The role renders config.toml from its own defaults merged with bridge_config and
bridge_secrets (ansible/roles/bridge/vars/main.yml, templates/config.toml.j2), and checks
it on the controller with `python -m bridge.config` before anything on the Pi changes
(tasks/config_check.yml). These tests run that template and that check with the real
ansible-playbook, on this machine only (connection local, nothing provisioned).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bridge import config

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "ansible" / "roles" / "bridge"
EXAMPLE = ROOT / "deploy" / "config.example.toml"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

pytestmark = pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-playbook not in .venv")

# The role's merge and template, as the bridge role applies them (its defaults and vars
# as play variables, so extra vars win as inventory settings would).
RENDER = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{defaults}, {vars}]
  tasks:
    - ansible.builtin.template:
        src: {template}
        dest: "{{{{ out }}}}"
        mode: "0600"
"""

CHECK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: bridge
        tasks_from: config_check
"""


def ansible(
    playbook: str, tmp_path: Path, extra: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    book = tmp_path / "play.yml"
    book.write_text(playbook)
    extra_file = tmp_path / "extra.json"
    extra_file.write_text(json.dumps(extra))
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ROOT / "ansible" / "roles"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "LC_ALL": "C.UTF-8",
    }
    return subprocess.run(
        [str(PLAYBOOK), "-i", "localhost,", str(book), "-e", f"@{extra_file}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def render(tmp_path: Path, **extra: object) -> Path:
    out = tmp_path / "config.toml"
    playbook = RENDER.format(
        defaults=ROLE / "defaults" / "main.yml",
        vars=ROLE / "vars" / "main.yml",
        template=ROLE / "templates" / "config.toml.j2",
    )
    done = ansible(playbook, tmp_path, {"out": str(out), **extra})
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_every_key_of_the_example_can_be_set(tmp_path: Path) -> None:
    every_key = tomllib.loads(EXAMPLE.read_text())
    # As an INI inventory gives it: one line of JSON text.
    rendered = render(tmp_path, bridge_config=json.dumps(every_key))
    assert config.load(rendered, environ={}) == config.load(EXAMPLE, environ={})
    written = tomllib.loads(rendered.read_text())
    assert written == every_key


def test_the_roles_defaults_and_the_secrets_merged_last(tmp_path: Path) -> None:
    rendered = render(
        tmp_path,
        network_pvs_interface="eth1",
        bridge_config={"cache": {"refresh": 30, "ttl": {"Get_Comm": 120.0}}},
        bridge_secrets={"writes": {"enabled": True, "token": "s3cret-token-0123456789"}},
    )
    loaded = config.load(rendered, environ={})
    assert loaded.server.listen_tls == ("0.0.0.0:443",)
    assert loaded.server.listen_ws == ("0.0.0.0:9002",)
    assert (loaded.upstream.url, loaded.upstream.interface) == ("auto", "eth1")
    assert loaded.cache.refresh == 30
    assert dict(loaded.cache.ttl) == {"Get_Comm": 120.0}
    assert (loaded.writes.enabled, loaded.writes.token) == (True, "s3cret-token-0123456789")


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a shell")
def test_a_bad_configuration_stops_the_play_with_every_problem_and_no_secret(
    tmp_path: Path,
) -> None:
    secret = "pa55word-that-must-not-show"
    done = ansible(
        CHECK,
        tmp_path,
        {
            "bridge_source_dir": str(ROOT),
            "bridge_config": {"cache": {"refresh": -1}, "nonsense": {"x": 1}},
            "bridge_secrets": {"upstream": {"password": [secret]}},
        },
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Stop on a bad configuration" in output
    for problem in ("cache.refresh", "[nonsense]", "upstream.password"):
        assert problem in output, output
    assert secret not in output


def test_a_good_configuration_passes_the_check(tmp_path: Path) -> None:
    done = ansible(
        CHECK,
        tmp_path,
        {"bridge_source_dir": str(ROOT), "bridge_config": {"cache": {"refresh": 30}}},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Stop on a bad configuration" in done.stdout
    assert "skipping" in done.stdout.split("Stop on a bad configuration")[1]


@pytest.mark.parametrize(
    "settings",
    [
        {"bridge_install_source": "pypi"},
        {"bridge_install_source": "wheelhouse"},  # without bridge_wheelhouse_dir
        {"bridge_config": {"server": {"state_dir": "/srv/elsewhere"}}},
    ],
)
def test_bad_settings_stop_the_check_that_runs_before_any_change(
    tmp_path: Path, settings: dict[str, object]
) -> None:
    # site.yml runs config_check before the network, firewall and appliance roles: a
    # setting the bridge role cannot use must stop the play there, not after them.
    done = ansible(CHECK, tmp_path, {"bridge_source_dir": str(ROOT), **settings})
    assert done.returncode != 0
    assert "Check the settings before changing anything" in done.stdout
    assert "bridge_install_source is controller_wheel or wheelhouse" in done.stdout


FIREWALL = ROOT / "ansible" / "roles" / "firewall"
FIREWALL_RENDER = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{defaults}]
  tasks:
    - ansible.builtin.copy:
        content: "{{{{ firewall_bridge_ports | to_json }}}}"
        dest: "{{{{ out }}}}"
        mode: "0600"
"""


@pytest.mark.parametrize(
    ("bridge_config", "ports"),
    [
        ({}, [80, 443, 8080, 9002]),
        ({"server": {"listen": ["0.0.0.0:8081"], "listen_tls": []}}, [8081, 9002]),
        ('{"server": {"listen_ws": ["0.0.0.0:9003"]}}', [80, 443, 8080, 9003]),  # INI text
    ],
)
def test_the_firewall_opens_the_ports_bridge_config_listens_on(
    tmp_path: Path, bridge_config: object, ports: list[int]
) -> None:
    out = tmp_path / "ports.json"
    book = FIREWALL_RENDER.format(defaults=FIREWALL / "defaults" / "main.yml")
    result = ansible(book, tmp_path, {"out": str(out), "bridge_config": bridge_config})
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(out.read_text()) == ports
