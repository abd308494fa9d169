"""Crafted raw requests: each gets a 4xx JSON answer and nothing reaches the simulated PVS."""

from __future__ import annotations

import pytest

from bridge.clock import FakeClock
from tests.support import DEVICE_LIST, FAULT_TIMING, ServeFactory, Sim, raw_request

DL = "/cgi-bin/dl_cgi"


def req(target: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 request; Host and Connection: close unless headers replace them."""
    lines = [f"{method} {target} HTTP/1.1"]
    if not any(h.lower().startswith("host:") for h in headers):
        lines.append("Host: 127.0.0.1")
    lines.extend(headers)
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


# (id, raw request, expected status, expected error code or None for any)
HOSTILE: list[tuple[str, bytes, int, str | None]] = [
    ("absolute-uri", req(f"http://evil.example{DL}?Command=DeviceList"), 400, "absolute_target"),
    ("absolute-uri-pvs", req(f"http://172.27.153.1{DL}?Command=Start"), 400, "absolute_target"),
    ("connect", req("evil.example:443", method="CONNECT"), 400, "absolute_target"),
    ("encoded-dotdot", req(f"{DL}/%2e%2e/%2e%2e/etc/passwd"), 400, "bad_path"),
    ("dotdot", req(f"{DL}/supervisor/../supervisor/info"), 400, "bad_path"),
    ("dot", req(f"{DL}/./supervisor/info"), 400, "bad_path"),
    ("encoded-slash", req(f"{DL}/supervisor%2finfo"), 400, "bad_path"),
    ("encoded-backslash", req(f"{DL}/supervisor%5cinfo"), 400, "bad_path"),
    ("double-slash", req("//evil.example/cgi-bin/dl_cgi"), 400, "bad_path"),
    ("encoded-nul", req(f"{DL}/devices%00/list"), 400, "bad_path"),
    ("encoded-non-utf8-path", req(f"{DL}/%ff%fe"), 400, "bad_path"),
    ("outside-allowlist", req("/etc/passwd"), 404, None),
    ("unknown-dl-path", req(f"{DL}/firmware/upgrade"), 404, "unknown_path"),
    ("host-with-path", req(DEVICE_LIST, "Host: evil.example/x"), 400, "bad_header"),
    ("host-with-userinfo", req(DEVICE_LIST, "Host: user@evil.example"), 400, "bad_header"),
    ("host-empty", req(DEVICE_LIST, "Host: "), 400, "bad_header"),
    ("host-twice", req(DEVICE_LIST, "Host: a", "Host: b"), 400, "malformed_request"),
    ("host-missing", b"GET " + DEVICE_LIST.encode() + b" HTTP/1.1\r\n\r\n", 400, None),
    ("repeated-command", req(f"{DL}?Command=DeviceList&Command=Start"), 400, "repeated_parameter"),
    ("bad-serial", req(f"{DL}?Command=DeviceDetails&SerialNumber=..%2F..%2Fx"), 400, None),
    ("bad-fw-type", req(f"{DL}?Command=CheckFW&type=industrial"), 400, "bad_parameter"),
    ("missing-serial", req(f"{DL}?Command=DeviceDetails"), 400, "missing_parameter"),
    ("control-in-query", req(f"{DL}?Command=Device%0AList"), 400, "control_characters"),
    ("non-utf8-query", req(f"{DL}?Command=%ff%fe"), 400, "bad_encoding"),
    ("write-command", req(f"{DL}?Command=GridProfileRefresh"), 403, "command_not_allowed"),
    ("no-command", req(f"{DL}?command=DeviceList"), 400, "missing_command"),
    ("long-query", req(f"{DL}?Command=DeviceList&x={'a' * 1500}"), 414, "query_too_long"),
    ("long-url", req(f"{DL}/{'a' * 5000}"), 414, "request_too_large"),
    ("long-header", req(DEVICE_LIST, f"X-Big: {'a' * 6000}"), 431, "request_too_large"),
    ("many-headers", req(DEVICE_LIST, *(f"X-{i}: {i}" for i in range(80))), 400, None),
    ("raw-non-utf8-path", b"GET /cgi-bin/dl_cgi/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
    ("raw-control-path", b"GET /cgi-bin/dl\x01cgi HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
    ("non-utf8-header", req(DEVICE_LIST, "X-Name: \udcff\udcfe"), 400, "bad_header"),
    ("control-in-header", req(DEVICE_LIST, "X-Name: a\x01b"), 400, None),
    ("post", req(DEVICE_LIST, "Content-Length: 2", method="POST", body=b"{}"), 405, None),
    ("delete", req(DEVICE_LIST, method="DELETE"), 405, "method_not_allowed"),
    ("trace", req("/", method="TRACE"), 405, "method_not_allowed"),
    ("unknown-method", req(DEVICE_LIST, method="FOO"), 400, "malformed_request"),
    ("bad-method-token", req(DEVICE_LIST, method="G(T"), 400, "malformed_request"),
    ("big-body", req(DEVICE_LIST, "Content-Length: 100000", body=b"x" * 1000), 413, None),
    (
        "big-chunked-body",
        req(
            DEVICE_LIST,
            "Transfer-Encoding: chunked",
            body=b"2000\r\n" + b"x" * 8192 + b"\r\n0\r\n\r\n",
        ),
        413,
        "body_too_large",
    ),
    (
        "smuggling-te-cl",
        req(DEVICE_LIST, "Transfer-Encoding: chunked", "Content-Length: 3", body=b"0\r\n\r\n"),
        400,
        "malformed_request",
    ),
    ("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400, None),
    ("asterisk", req("*", method="OPTIONS"), 400, None),
]


async def test_hostile_requests_get_json_4xx_and_never_reach_the_pvs(
    simulator: Sim, serve_bridge: ServeFactory
) -> None:
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=FakeClock())
    seen: dict[str, tuple[int, str | None]] = {}
    for name, raw, _status, _error in HOSTILE:
        answer = await raw_request(bridge.port, raw)
        assert answer is not None, f"{name}: no HTTP answer"
        assert answer.headers.get("content-type", "").startswith("application/json"), name
        seen[name] = (answer.status, answer.json().get("error"))
    expected = {
        name: (status, error if error is not None else seen[name][1])
        for name, _raw, status, error in HOSTILE
    }
    assert seen == expected
    assert (await simulator.stats())["total"] == 0  # not one of them went upstream
    health = await raw_request(bridge.port, req("/health"))
    assert health is not None
    assert health.status == 200
    assert health.json()["status"] == "degraded"  # waiting for the first answer only
    good = await raw_request(bridge.port, req(DEVICE_LIST))
    assert good is not None
    assert good.status == 200
    assert (await simulator.stats())["requests"] == {"DeviceList": 1}


@pytest.mark.parametrize(
    "target",
    [
        f"{DL}?Command=DeviceList&_=1700000000000",  # a browser's cache buster
        f"{DL}?Command=DeviceList&SerialNumber=x",  # a parameter DeviceList does not take
    ],
)
async def test_unknown_parameters_are_dropped_before_the_pvs(
    simulator: Sim, serve_bridge: ServeFactory, target: str
) -> None:
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=FakeClock())
    answer = await raw_request(bridge.port, req(target))
    assert answer is not None
    assert answer.status == 200
    stats = await simulator.stats()
    assert stats["requests"] == {"DeviceList": 1}


async def test_ordinary_clients_are_not_refused(simulator: Sim, serve_bridge: ServeFactory) -> None:
    # Host forms real clients send: the Pi's address with a port, the PVS's DNS name,
    # an IPv6 literal, HTTP/1.0 without Host; HEAD / as a health probe.
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=FakeClock())
    for raw in [
        req(DEVICE_LIST, "Host: 192.168.1.50:8080"),
        req(DEVICE_LIST, "Host: sunpowerconsole.com"),
        req(DEVICE_LIST, "Host: [::1]:80"),
        req("/", method="HEAD"),
        b"GET " + DEVICE_LIST.encode() + b" HTTP/1.0\r\n\r\n",
        req(f"{DL}/supervisor/info", "User-Agent: Mozilla/5.0 (X11; Linux) \u00e9t\u00e9"),
    ]:
        answer = await raw_request(bridge.port, raw)
        assert answer is not None
        assert answer.status == 200, raw


async def test_a_request_line_without_a_target_gets_an_http11_json_refusal(
    simulator: Sim, serve_bridge: ServeFactory
) -> None:
    # Found by the fuzz test: aiohttp parses "CONNECT  HTTP/1.1" as HTTP/0.9.
    bridge = await serve_bridge(simulator.url, FAULT_TIMING, clock=FakeClock())
    answer = await raw_request(bridge.port, b"CONNECT  HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer is not None
    assert answer.status == 400
    assert answer.headers["content-type"].startswith("application/json")
    assert (await simulator.stats())["total"] == 0
