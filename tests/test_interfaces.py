"""`upstream = "auto"` and /health's interface view, inside a namespace this test makes.

A veth interface carries a PVS-side address, exactly as the Pi's eth0 does after the
PVS's DHCP; no packet is sent anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to make a network namespace",
)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"pvsb-test-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        yield name
    finally:
        ip("netns", "delete", name)


def inside(namespace: str, code: str) -> object:
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    return json.loads(result.stdout)


def add_interface(namespace: str, name: str, cidr: str) -> None:
    # A veth pair with both ends in the namespace (not every kernel has the dummy driver).
    ip("-n", namespace, "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    ip("-n", namespace, "addr", "add", cidr, "dev", name)
    ip("-n", namespace, "link", "set", name, "up")


@needs_netns
@pytest.mark.parametrize(
    ("cidr", "pvs"), [("172.27.153.23/24", "172.27.153.1"), ("172.27.152.40/24", "172.27.152.1")]
)
def test_auto_finds_the_pvs_from_the_pvs_side_interface(
    namespace: str, cidr: str, pvs: str
) -> None:
    add_interface(namespace, "lan0", "192.168.50.7/24")
    add_interface(namespace, "pvs0", cidr)
    found = inside(
        namespace,
        "import json; from bridge.host import interfaces; print(json.dumps(interfaces.find_pvs()))",
    )
    assert found == ["pvs0", pvs]
    view = inside(
        namespace,
        "import json; from bridge.host import interfaces; print(json.dumps(interfaces.describe()))",
    )
    assert isinstance(view, dict)
    assert view["pvs_side"]["name"] == "pvs0"
    assert view["pvs_side"]["address"] == cidr.split("/", maxsplit=1)[0]
    assert {"name": "lan0", "addresses": ["192.168.50.7"]} in [
        {"name": row["name"], "addresses": [a for a in row["addresses"] if "." in a]}
        for row in view["lan"]
    ]


@needs_netns
def test_auto_without_a_pvs_side_interface_falls_back_to_the_default(namespace: str) -> None:
    add_interface(namespace, "lan0", "192.168.50.7/24")
    code = (
        "import json; from bridge.host import interfaces;"
        "print(json.dumps([interfaces.resolve_upstream_url('auto')]))"
    )
    assert inside(namespace, code) == ["http://172.27.153.1"]


@needs_netns
def test_named_interface_hint_wins(namespace: str) -> None:
    add_interface(namespace, "eth1", "172.27.153.9/24")
    add_interface(namespace, "usb0", "172.27.153.10/24")
    code = (
        "import json; from bridge.host import interfaces;"
        "print(json.dumps(interfaces.find_pvs('usb0')))"
    )
    assert inside(namespace, code) == ["usb0", "172.27.153.1"]
