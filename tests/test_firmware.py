"""2025 firmware, upstream side: detection, login, expiry, wrong password, legacy clients."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.host.tls import fingerprint, self_signed
from bridge.pvs.detect import LEGACY, NEW, Supervisor, firmware_of, parse_supervisor
from bridge.simulator import legacy
from bridge.simulator.firmware2025 import INVERTER_FIELDS, METER_FIELDS
from tests.support import DEVICE_LIST, FAST_BACKOFF, BridgeFactory, SimulatorFactory, pvs_2025


@pytest.mark.parametrize(
    ("model", "swver", "build", "expected"),
    [
        ("PVS6", "2025.09, Build 61845", 61845, NEW),
        ("PVS6", "2025.06, Build 61840", 61840, NEW),
        ("PVS6", "2024.6, Build 61707", 61707, LEGACY),
        ("PVS5", "2025.11, Build 5412", None, NEW),  # PVS5: no BUILD, only SWVER
        ("PVS5", "2024.1, Build 5407", None, LEGACY),
        ("PVS6", "2019.5", None, None),
    ],
)
def test_firmware_from_supervisor_info(
    model: str, swver: str, build: int | None, expected: str | None
) -> None:
    info: dict[str, Any] = {"MODEL": model, "SWVER": swver, "SERIAL": "ZT0123456789ABCDE"}
    if build is not None:
        info["BUILD"] = build
    found = parse_supervisor(json.dumps({"result": "succeed", "supervisor": info}).encode())
    assert found is not None
    assert firmware_of(found) == expected


def test_supervisor_info_without_supervisor_is_none() -> None:
    assert parse_supervisor(b"not json") is None
    assert parse_supervisor(b'{"result": "succeed"}') is None
    assert firmware_of(Supervisor("PVS6", "x", "", None)) is None


def devices_by_serial(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {device["SERIAL"]: device for device in document["devices"]}


async def test_legacy_client_gets_a_complete_devicelist_without_credentials(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    """Done-when 1: every inverter and meter, the PVS, the simulator's current values."""
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025(inverters=6))
    client = await start_bridge(sim.url, FAST_BACKOFF, clock=clock)
    answer = await client.get(DEVICE_LIST)
    assert answer.status == 200
    body = await answer.read()
    ours = devices_by_serial(json.loads(body))
    expected = devices_by_serial(
        legacy.device_list(sim.simulator.site, sim.simulator.options.swver)
    )
    assert set(ours) == set(expected)  # the PVS, both meters, all 6 inverters
    assert [d["DEVICE_TYPE"] for d in json.loads(body)["devices"]].count("Inverter") == 6
    for serial, device in expected.items():
        table = {"Inverter": INVERTER_FIELDS, "Power Meter": METER_FIELDS}.get(
            device["DEVICE_TYPE"], {}
        )
        for legacy_name in table.values():
            if legacy_name in device:
                assert ours[serial][legacy_name] == device[legacy_name], (serial, legacy_name)
        assert ours[serial]["DATATIME"] == device["DATATIME"] or device["DEVICE_TYPE"] == "PVS"
        assert ours[serial]["CURTIME"] == device["CURTIME"]
    assert json.loads(body)["result"] == "succeed"
    stats = await sim.stats()
    assert stats["logins"] == 1
    assert stats["requests"]["DeviceList"] == 1  # once: the 403 that starts detection
    health = await (await client.get("/health")).json()
    assert health["upstream"]["firmware"] == "2025"
    assert health["upstream"]["firmware_source"] == "supervisor/info"


async def test_values_advance_and_refresh_goes_through_the_cache(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF, clock=clock, cache={"refresh": 60.0})
    first = await client.get(DEVICE_LIST)
    again = await client.get(DEVICE_LIST)
    assert again.headers["X-Cache"] == "HIT"
    assert await first.read() == await again.read()
    queries = (await sim.stats())["vars_queries"]
    assert sum(queries.values()) == 2  # one /sys/info/ and one /sys/devices/ query
    await clock.advance(3600)
    later = await client.get(DEVICE_LIST)
    if later.headers["X-Cache"] == "STALE":
        later = await client.get(DEVICE_LIST)  # the refresh it started has landed
    curtime = json.loads(await later.read())["devices"][0]["CURTIME"]
    assert curtime != json.loads(await first.read())["devices"][0]["CURTIME"]


@pytest.mark.parametrize(
    ("command", "status", "check"),
    [
        ("Start", 200, lambda doc: doc["supervisor"]["SWVER"] == "2025.09, Build 61845"),
        ("Stop", 200, lambda doc: doc == {"result": "succeed"}),
        ("Get_Comm", 200, lambda doc: doc["networkstatus"]["interfaces"]),
        ("GridProfileGet", 501, lambda doc: doc["error"] == "not_on_this_firmware"),
        ("CheckFW", 501, lambda doc: "GridProfileGet" not in doc["message"]),
    ],
)
async def test_other_legacy_commands(
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    command: str,
    status: int,
    check: Any,
) -> None:
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF)
    answer = await client.get(f"/cgi-bin/dl_cgi?Command={command}")
    assert answer.status == status
    text = await answer.text()
    assert check(json.loads(text))
    # In the PVS's print layout, refusals too: a line-filtering client still parses it.
    kept = "\n".join(line for line in text.splitlines() if line[:1] in ("{", "\t", "}"))
    assert json.loads(kept) == json.loads(text)


async def test_device_details_and_session_paths(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF)
    serial = sim.simulator.site.inverters[1].serial
    details = await client.get(f"/cgi-bin/dl_cgi?Command=DeviceDetails&SerialNumber={serial}")
    assert json.loads(await details.read())["devices"][0]["SERIAL"] == serial
    listed = await client.get("/cgi-bin/dl_cgi/devices/list")  # needs the session upstream
    assert listed.status == 200
    assert len(json.loads(await listed.read())["devices"]) == 1 + 2 + 4
    assert (await sim.stats())["logins"] == 1


async def test_concurrent_device_details_share_one_translated_list(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF)
    serials = [inverter.serial for inverter in sim.simulator.site.inverters]
    asked = [f"/cgi-bin/dl_cgi?Command=DeviceDetails&SerialNumber={s}" for s in serials]
    answers = await asyncio.gather(*(client.get(target) for target in [*asked, DEVICE_LIST]))
    assert [answer.status for answer in answers] == [200] * (len(serials) + 1)
    stats = await sim.stats()
    # One build of the list (its two /vars queries) for all of them, one at a time.
    assert stats["requests"]["/vars"] == 2, stats
    assert stats["max_concurrent"] == 1


async def test_first_403_switches_to_2025_when_supervisor_info_has_no_build(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    sim = await start_simulator(**pvs_2025(swver="2025.09", build=None))
    # build None: the simulator's supervisor/info has neither BUILD nor "Build N".
    client = await start_bridge(sim.url, FAST_BACKOFF)
    answer = await client.get(DEVICE_LIST)
    assert answer.status == 200
    assert len(json.loads(await answer.read())["devices"]) == 7
    stats = await sim.stats()
    assert stats["requests"]["DeviceList"] == 1  # the one 403 that told
    health = await (await client.get("/health")).json()
    assert health["upstream"]["firmware_source"] == "first 403 to a legacy command"


async def test_legacy_firmware_is_passed_through(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, firmware="legacy", inverters=4)
    client = await start_bridge(sim.url, FAST_BACKOFF, clock=clock)
    answer = await client.get(DEVICE_LIST)
    assert json.loads(await answer.read()) == legacy.device_list(
        sim.simulator.site, sim.simulator.options.swver
    )
    stats = await sim.stats()
    assert stats["requests"] == {"DeviceList": 1}  # detection cost nothing
    # The 2025 client API on legacy firmware: from the device list in memory, no request.
    vars_answer = await client.get("/vars?name=/sys/info/serialnum&fmt=obj")
    assert vars_answer.status == 200
    assert json.loads(await vars_answer.read()) == {
        "/sys/info/serialnum": sim.simulator.site.serial
    }
    assert (await sim.stats())["requests"] == {"DeviceList": 1}


async def test_expired_session_is_renewed_once(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025(session_ttl=300.0))
    client = await start_bridge(
        sim.url, FAST_BACKOFF, clock=clock, cache={"refresh": 10.0, "max_stale": 0.0}
    )
    for _round in range(12):  # 12 x 100 s: the session lives 300 s
        answers = [await client.get(DEVICE_LIST) for _ in range(3)]
        assert all(answer.status == 200 for answer in answers)
        await clock.advance(100.0)
    stats = await sim.stats()
    assert 4 <= stats["logins"] <= 5  # about 1200 s / 300 s, not once per request
    assert stats["login_failures"] == 0
    health = await (await client.get("/health")).json()
    assert health["upstream"]["session"]["renewals"] == stats["logins"] - 1


async def test_a_500_drops_the_session_and_the_next_attempt_logs_in_again(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # Clients log in again after a 500; a session kept for ever would fail for ever.
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025())
    client = await start_bridge(
        sim.url, FAST_BACKOFF, clock=clock, cache={"refresh": 10.0, "max_stale": 0.0}
    )
    assert (await client.get(DEVICE_LIST)).status == 200
    assert (await sim.stats())["logins"] == 1
    await sim.fault("error500")
    await clock.advance(11.0)
    assert (await client.get(DEVICE_LIST)).status >= 500
    await sim.fault("ok")
    await clock.advance(11.0)
    assert (await client.get(DEVICE_LIST)).status == 200
    stats = await sim.stats()
    assert stats["logins"] == 2, stats  # one new login, not one per request
    assert stats["login_failures"] == 0


async def test_logins_that_work_do_not_reset_the_backoff_of_failing_data(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # A PVS whose sessions are dead on arrival: every login works, every data request is
    # refused. The failures must add up (and the breaker open) instead of each login
    # starting the backoff over, which would poll the PVS every backoff_initial for ever.
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025(session_ttl=0.0))
    client = await start_bridge(
        sim.url, FAST_BACKOFF, clock=clock, cache={"refresh": 10.0, "max_stale": 0.0}
    )
    for _poll in range(6):
        assert (await client.get(DEVICE_LIST)).status != 200
        await clock.advance(30.0)  # past any backoff: each poll may try once
    health = await (await client.get("/health")).json()
    upstream = health["upstream"]
    assert upstream["consecutive_failures"] >= 6, upstream
    assert upstream["breaker"] != "closed"


async def test_wrong_password_clear_health_no_login_storm(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025())
    client = await start_bridge(
        sim.url, FAST_BACKOFF, clock=clock, upstream={"password": "Wr0ng-Secret"}
    )
    statuses = []
    for _ in range(20):
        answer = await client.get(DEVICE_LIST)
        statuses.append(answer.status)
        await clock.advance(1.0)
    assert set(statuses) <= {502, 503, 504}
    stats = await sim.stats()
    assert stats["login_failures"] == 1  # 20 s of polling: one attempt, then backoff
    health_text = await (await client.get("/health")).text()
    health = json.loads(health_text)
    assert any("refused the login" in reason for reason in health["reasons"])
    assert "upstream.password" in health["upstream"]["session"]["login_problem"]
    await clock.advance(60.0)
    await client.get(DEVICE_LIST)
    assert (await sim.stats())["login_failures"] == 2  # retried after the backoff
    secrets = ("Wr0ng-Secret", "ABCDE", "c3NtX293bmVy")  # password, serial tail, base64
    for secret in secrets:
        assert secret not in health_text
        assert secret not in caplog.text


async def test_serial_password_never_shown(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = await start_simulator(**pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF)
    assert (await client.get(DEVICE_LIST)).status == 200
    health = await (await client.get("/health")).text()
    metrics = await (await client.get("/metrics")).text()
    for text in (health, metrics, caplog.text):
        assert "ssm_owner:ABCDE" not in text
        assert "c3NtX293bmVyOkFCQ0RF" not in text  # base64 of the credentials


@pytest.mark.parametrize("pinned", [False, True])
async def test_upstream_https(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, tmp_path: Path, pinned: bool
) -> None:
    tls_dir = tmp_path / "pvs-tls"
    sim = await start_simulator(**pvs_2025(), tls_dir=tls_dir)
    assert sim.url.startswith("https://")
    upstream: dict[str, Any] = {}
    if pinned:
        upstream["tls_fingerprint"] = fingerprint(self_signed(tls_dir)[0])
    client = await start_bridge(sim.url, FAST_BACKOFF, upstream=upstream)
    answer = await client.get(DEVICE_LIST)
    assert answer.status == 200


async def test_upstream_https_wrong_pin_fails(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, tmp_path: Path
) -> None:
    sim = await start_simulator(**pvs_2025(), tls_dir=tmp_path / "pvs-tls")
    client = await start_bridge(sim.url, FAST_BACKOFF, upstream={"tls_fingerprint": "00" * 32})
    answer = await client.get(DEVICE_LIST)
    assert answer.status >= 500
    assert (await sim.stats())["logins"] == 0


async def test_bridge_logs_out_of_the_pvs_when_it_stops(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    # The PVS is reported to leak sessions; a restart must not leave one behind.
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025())
    client = await start_bridge(sim.url, FAST_BACKOFF, clock=clock)
    assert (await client.get(DEVICE_LIST)).status == 200
    before = await sim.stats()
    assert before["logins"] == 1
    assert before["sessions"] == 1
    await client.close()
    after = await sim.stats()
    assert after["requests"]["/auth"] == before["requests"]["/auth"] + 1
    assert after["sessions"] == 0


@pytest.mark.parametrize("login_body", ["empty-object", "none"])
async def test_login_session_is_taken_from_the_cookie_when_the_body_lacks_it(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, login_body: str
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, **pvs_2025(login_body=login_body))
    client = await start_bridge(sim.url, FAST_BACKOFF, clock=clock)
    answer = await client.get(DEVICE_LIST)
    assert answer.status == 200
    assert json.loads(await answer.read())["result"] == "succeed"
    assert (await sim.stats())["logins"] == 1
