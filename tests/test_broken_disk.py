"""A broken disk never stops the service (issue 12, point 5).

State files are replaced atomically; a certificate pair that does not load is made anew,
and when it cannot be, only the TLS listener is off (named in /health) while HTTP serves;
a read-only or full `state_dir` is reported in /health, never fatal; a warm-store file is
checked as a live answer is, and anything invalid is ignored with one log line.

Everything is real: directories the kernel refuses (a path under a regular file, /sys),
a real file-size limit (RLIMIT_FSIZE) standing in for a full card, real bridge processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import resource
import signal
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.cache.warmstore import FILE_NAME, WarmStore
from bridge.clock import FakeClock
from bridge.host.statefiles import write_atomically
from bridge.host.tls import CERT_NAME, KEY_NAME, context_from_config, self_signed, server_context
from bridge.pvs.answer import Answer
from tests.support import (
    DEVICE_LIST,
    FAULT_TIMING,
    UNREACHABLE,
    BridgeFactory,
    Sim,
    bridge_config,
    free_port,
    health,
    health_when_serving,
    idle,
    serve_process,
)

WALL = 1_700_000_000.0


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """A real limit on the size of any file this process writes (Python ignores SIGXFSZ, so
    a write past it fails with EFBIG), as a full card fails a write; restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def under_a_file(tmp_path: Path) -> Path:
    """A state_dir the kernel refuses even to root: its parent is a regular file (ENOTDIR)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    return blocker / "state"


# -- the atomic write ------------------------------------------------------------------


def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomically(path, b"old and whole")
    with file_size_limit(1000), pytest.raises(OSError, match="too large"):
        write_atomically(path, b"x" * 5000)  # the card fills up halfway through
    assert path.read_bytes() == b"old and whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temp left
    write_atomically(path, b"new", mode=0o600)
    assert (path.read_bytes(), path.stat().st_mode & 0o777) == (b"new", 0o600)


# -- the TLS certificate ---------------------------------------------------------------


def _cut_short(state_dir: Path) -> None:
    cert = state_dir / CERT_NAME
    cert.write_bytes(cert.read_bytes()[:300])


def _garbage(state_dir: Path) -> None:
    (state_dir / CERT_NAME).write_bytes(b"\x00garbage\xff" * 50)
    (state_dir / KEY_NAME).write_bytes(b"not a key")


def _mismatched(state_dir: Path) -> None:
    other = state_dir / "other"
    other.mkdir()
    self_signed(other)
    (state_dir / KEY_NAME).write_bytes((other / KEY_NAME).read_bytes())


@pytest.mark.parametrize("damage", [_cut_short, _garbage, _mismatched])
def test_an_unusable_certificate_pair_is_made_anew(
    tmp_path: Path, damage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = bridge_config(UNREACHABLE, server={"state_dir": str(tmp_path)})
    context_from_config(cfg.server)
    damage(tmp_path)
    broken = (tmp_path / CERT_NAME).read_bytes()
    with pytest.raises((ssl.SSLError, OSError)):
        server_context(tmp_path / CERT_NAME, tmp_path / KEY_NAME)
    with caplog.at_level(logging.WARNING):
        assert isinstance(context_from_config(cfg.server), ssl.SSLContext)
    assert (tmp_path / CERT_NAME).read_bytes() != broken
    server_context(tmp_path / CERT_NAME, tmp_path / KEY_NAME)  # loads now
    assert (tmp_path / KEY_NAME).stat().st_mode & 0o777 == 0o600
    assert len([r for r in caplog.records if "making a new one" in r.getMessage()]) == 1


async def _serve(
    upstream: str, state_dir: Path, port: int, tls_port: int, file_limit: int | None = None
) -> asyncio.subprocess.Process:
    """`pvs-bridge serve --listen-tls` as a real process (optionally under a file-size limit)."""

    def limit_files() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return await serve_process(
        upstream, state_dir, port, "--listen-tls", f"127.0.0.1:{tls_port}", preexec_fn=limit_files
    )


async def _stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise


@pytest.mark.parametrize("disk", ["read-only", "full"])
async def test_without_a_certificate_only_tls_is_off_and_http_serves(
    simulator: Sim, tmp_path: Path, disk: str
) -> None:
    if disk == "read-only":  # ENOTDIR: refused even to root
        state_dir, limit, error = under_a_file(tmp_path), None, "ENOTDIR"
    else:  # files of at most 200 bytes: neither the key nor the certificate fits
        state_dir, limit, error = tmp_path, 200, "EFBIG"
    port, tls_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    process = await _serve(simulator.url, state_dir, port, tls_port, limit)
    try:
        document = await health_when_serving(process, url)
        assert document["tls"]["wanted"] is True
        assert document["tls"]["listening"] is False
        assert "state_dir" in document["tls"]["reason"]
        assert document["state_dir"]["writable"] is False
        assert error in document["state_dir"]["error"]
        reasons = " | ".join(document["reasons"])
        assert "TLS listener off" in reasons
        assert "cannot be written" in reasons
        async with aiohttp.ClientSession() as session, session.get(url + DEVICE_LIST) as response:
            assert response.status == 200
            assert b"devices" in await response.read()
        with pytest.raises(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", tls_port)
            writer.close()
    finally:
        returncode = await _stop(process)
    assert returncode == 0


# -- state_dir in /health --------------------------------------------------------------


async def test_a_read_only_state_dir_is_reported_and_the_bridge_serves(
    simulator: Sim, start_bridge: BridgeFactory
) -> None:
    readonly = Path("/sys/kernel")  # a directory no one may create files in, root included
    with contextlib.suppress(OSError):
        (readonly / ".write-probe").write_bytes(b"")
        pytest.skip("/sys/kernel takes writes here")
    clock = FakeClock(wall_start=WALL)
    bridge = await start_bridge(
        simulator.url, clock=clock, server={"state_dir": str(readonly)}, cache={"warm_start": True}
    )
    assert (await bridge.get(DEVICE_LIST)).status == 200
    status, document = await health(bridge)
    assert status == 200
    assert document["status"] == "degraded"
    assert document["state_dir"]["exists"] is True
    assert document["state_dir"]["writable"] is False
    assert "EACCES" in document["state_dir"]["error"]
    assert any("state_dir /sys/kernel cannot be written" in r for r in document["reasons"])


async def test_a_full_state_dir_is_reported_then_forgotten_once_a_write_succeeds(
    simulator: Sim, start_bridge: BridgeFactory, tmp_path: Path
) -> None:
    clock = FakeClock(wall_start=WALL)
    bridge = await start_bridge(
        simulator.url, clock=clock, server={"state_dir": str(tmp_path)}, cache={"warm_start": True}
    )
    assert (await bridge.get(DEVICE_LIST)).status == 200
    _, document = await health(bridge)
    assert document["state_dir"] == {
        "path": str(tmp_path),
        "exists": True,
        "writable": True,
        "error": None,
        "files": [],
    }
    assert document["status"] == "ok", document["reasons"]
    with file_size_limit(1000):  # the DeviceList is bigger than what is left on the card
        await clock.advance(900.0)  # the warm store's periodic save
    _, document = await health(bridge)
    assert document["state_dir"]["writable"] is False
    assert "EFBIG" in document["state_dir"]["error"]
    assert FILE_NAME in document["state_dir"]["files"]
    assert document["status"] == "degraded"
    assert (await bridge.get(DEVICE_LIST)).status == 200  # serving from memory all along
    await idle(bridge)  # the refresh that read started: an answer to save
    await clock.advance(900.0)  # the next save, with room again
    _, document = await health(bridge)
    assert document["state_dir"]["writable"] is True
    assert document["status"] == "ok", document["reasons"]


# -- the warm store, checked as a live answer ------------------------------------------


def _valid_document(body: bytes, upstream: str) -> dict[str, Any]:
    path_holder: dict[str, Any] = {}

    def keep(_path: Path, data: bytes) -> None:
        path_holder["document"] = json.loads(data)

    answer = Answer(200, body, "application/json", fetched_wall=WALL - 10.0)
    assert WarmStore(Path("unused"), upstream, FakeClock(wall_start=WALL), write=keep).save(answer)
    document: dict[str, Any] = path_holder["document"]
    return document


def _with(**changes: Any) -> Any:
    def change(document: dict[str, Any]) -> Any:
        return {**document, **changes}

    return change


INVALID = {
    "an empty list": lambda _document: [],
    "null": lambda _document: None,
    "status 99999": _with(status=99999),
    "a header with CRLF": _with(headers=[["X-Evil", "a\r\nSet-Cookie: x=1"]]),
    "a Content-Length": _with(headers=[["Content-Length", "99"]]),
    "a body that is not JSON": _with(body=base64.b64encode(b"<html>oops</html>").decode()),
    "JSON without a device list": _with(body=base64.b64encode(b'{"result": "succeed"}').decode()),
    "a fetched_wall that is text": _with(fetched_wall="yesterday"),
    "a body that is not base64": _with(body="%%%"),
}


@pytest.mark.parametrize("case", [None, *INVALID])
async def test_a_stored_devicelist_is_checked_like_a_live_answer(
    simulator: Sim,
    start_bridge: BridgeFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str | None,
) -> None:
    async with simulator.session.get(simulator.url + DEVICE_LIST) as response:
        body = await response.read()
    document = _valid_document(body, simulator.url)
    stored = document if case is None else INVALID[case](document)
    (tmp_path / FILE_NAME).write_text(json.dumps(stored))
    before = await simulator.count("DeviceList")
    await simulator.fault("down")  # whatever is served now comes from the store or nothing
    clock = FakeClock(wall_start=WALL)
    with caplog.at_level(logging.INFO, logger="bridge.cache.warmstore"):
        bridge = await start_bridge(
            simulator.url,
            FAULT_TIMING,
            clock=clock,
            server={"state_dir": str(tmp_path)},
            cache={"warm_start": True, "refresh": 60.0},
        )
        response = await bridge.get(DEVICE_LIST)
    ignored = [r for r in caplog.records if "warm start: ignoring" in r.getMessage()]
    if case is None:  # the control: a valid file is served at once
        assert (response.status, response.headers["X-Cache"]) == (200, "HIT")
        assert await response.read() == body
        assert ignored == []
    else:
        assert response.status >= 500  # never served
        assert len(ignored) == 1, [r.getMessage() for r in caplog.records]
        assert ignored[0].levelno == logging.WARNING
    assert await simulator.count("DeviceList") == before
