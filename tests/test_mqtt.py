"""MQTT against a real broker: Mosquitto started by each test on a free loopback port, a
real aiomqtt client subscribed, the bridge in front of the simulator.

Discovery for every device, states equal to the simulator's at the same fake time, the
last will when the bridge dies, lifetime counters held back, availability after
`cache.max_stale`, and the HTTP side unaffected by a broker that is down or refuses the
login. Waits are bounded; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.clock import FakeClock
from bridge.publish.mqtt import RECONNECT_MAX
from tests.support import (
    DEVICE_LIST,
    BridgeFactory,
    Client,
    Sim,
    SimulatorFactory,
    advance,
    bridge_app,
    bridge_client,
    free_port,
    health,
)

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or shutil.which(
    "mosquitto_passwd", path="/usr/bin:/usr/sbin"
)
NO_BROKER = "mosquitto is not installed (apt-get install mosquitto): this test needs a real broker"

WAIT = 20.0  # seconds any one wait for the broker or the bridge may take, at most
BASE, PREFIX = "pvs-bridge", "homeassistant"
Latest = Mapping[str, Any]


# -- the broker and a subscriber --------------------------------------------------------


@dataclass
class Mosquitto:
    """A Mosquitto broker on loopback, run from a config file of its own."""

    port: int
    process: asyncio.subprocess.Process

    def url(self, credentials: str = "") -> str:
        return f"mqtt://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def mosquitto(
    directory: Path, port: int | None = None, users: Mapping[str, str] | None = None
) -> AsyncIterator[Mosquitto]:
    """`mosquitto -c conf` listening on 127.0.0.1:port (anonymous, or these users only)."""
    if MOSQUITTO is None:
        pytest.skip(NO_BROKER)
    port = port or free_port()
    # `user`: stay who we are (as root, mosquitto would switch to a user that cannot read
    # the password file in the test's private directory).
    lines = [f"listener {port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}"]
    if users:
        assert MOSQUITTO_PASSWD is not None, "mosquitto_passwd is not installed"
        passwords = directory / f"passwords-{port}"
        for number, (user, password) in enumerate(users.items()):
            create = ["-c"] if number == 0 else []
            await run(MOSQUITTO_PASSWD, "-b", *create, str(passwords), user, password)
        lines += ["allow_anonymous false", f"password_file {passwords}"]
    else:
        lines.append("allow_anonymous true")
    conf = directory / f"mosquitto-{port}.conf"
    conf.write_text("\n".join(lines) + "\n")
    process = await asyncio.create_subprocess_exec(
        MOSQUITTO,
        "-c",
        str(conf),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await listening(port, process)
        yield Mosquitto(port, process)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), WAIT)
            except TimeoutError:
                process.kill()
                await process.wait()


async def run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(*command)
    assert await asyncio.wait_for(process.wait(), WAIT) == 0, command


async def listening(port: int, process: asyncio.subprocess.Process) -> None:
    """Wait (bounded) until the broker accepts connections."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if process.returncode is not None or loop.time() > deadline:
                assert process.stderr is not None
                error = await process.stderr.read()
                raise AssertionError(f"mosquitto did not start: {error.decode()}") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return


@dataclass
class Watch:
    """What a real MQTT client subscribed to everything has received."""

    latest: dict[str, Any] = field(default_factory=dict)  # topic -> last payload (JSON read)
    counts: dict[str, int] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, message: aiomqtt.Message) -> None:
        topic, payload = message.topic.value, message.payload
        text = payload.decode() if isinstance(payload, bytes | bytearray) else str(payload)
        try:
            self.latest[topic] = json.loads(text)
        except ValueError:
            self.latest[topic] = text
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.changed.set()

    async def until(self, check: Callable[[Latest], bool], what: str) -> None:
        """Wait (bounded) until `check(latest)` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not check(self.latest):
            self.changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {WAIT} s; got {sorted(self.latest)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every discovery config received, by topic."""
        return {t: p for t, p in self.latest.items() if t.startswith(f"{PREFIX}/sensor/") and p}


@contextlib.asynccontextmanager
async def watching(
    broker: Mosquitto, user: str | None = None, password: str | None = None
) -> AsyncIterator[Watch]:
    """A real aiomqtt client subscribed to every topic of the broker."""
    watch = Watch()
    async with aiomqtt.Client("127.0.0.1", broker.port, username=user, password=password) as client:
        await client.subscribe("#", qos=1)

        async def receive() -> None:
            async for message in client.messages:
                watch.take(message)

        task = asyncio.create_task(receive())
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    async with mosquitto(tmp_path) as running:
        yield running


async def device_list(sim: Sim) -> list[dict[str, Any]]:
    """The simulator's own DeviceList, now (its clock unmoved: what the bridge read)."""
    async with sim.session.get(sim.url + DEVICE_LIST) as response:
        devices: list[dict[str, Any]] = (await response.json())["devices"]
        return devices


def states_of(serials: list[str]) -> Callable[[Latest], bool]:
    return lambda latest: all(isinstance(latest.get(f"{BASE}/{s}/state"), dict) for s in serials)


async def mqtt_health(bridge: Client, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """/health's mqtt section once `check` holds (bounded poll)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        _status, document = await health(bridge)
        section: dict[str, Any] = document["mqtt"]
        if check(section) or loop.time() > deadline:
            return section
        await asyncio.sleep(0.02)


# -- the tests --------------------------------------------------------------------------


async def test_discovery_for_every_device_and_states_equal_to_the_simulator(
    broker: Mosquitto, start_simulator: SimulatorFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, inverters=3)
    async with watching(broker) as watch:
        app = bridge_app(sim.url, clock=clock, mqtt={"url": broker.url()})
        async with bridge_client(app) as bridge:
            devices = await device_list(sim)
            serials = [device["SERIAL"] for device in devices]
            await watch.until(states_of(serials), "state of every device")
            pvs = serials[0]
            await watch.until(lambda latest: f"{BASE}/{pvs}/live" in latest, "live totals")
            assert watch.latest[f"{BASE}/status"] == "online"
            for device in devices:
                state = watch.latest[f"{BASE}/{device['SERIAL']}/state"]
                assert state["taken_at"] is not None
                for name in ("p_3phsum_kw", "ltea_3phsum_kwh", "net_ltea_3phsum_kwh"):
                    if name in device:
                        assert state[name] == float(device[name]), (device["SERIAL"], name)
                availability = watch.latest[f"{BASE}/{device['SERIAL']}/availability"]
                assert availability == "online"
            configs = watch.configs()
            by_device: dict[str, set[str]] = {}
            for config in configs.values():
                (identifier,) = config["device"]["identifiers"]
                by_device.setdefault(identifier, set()).add(config["unique_id"])
                assert config["device"]["manufacturer"] == "SunPower"
                assert config["availability_mode"] == "all"
            assert set(by_device) == {f"sunpower_{serial}" for serial in serials}
            inverter = devices[-1]["SERIAL"]
            energy = configs[f"{PREFIX}/sensor/{inverter}/ltea_3phsum_kwh/config"]
            assert energy["device_class"] == "energy"
            assert energy["state_class"] == "total_increasing"
            assert energy["device"]["via_device"] == f"sunpower_{pvs}"
            live = watch.latest[f"{BASE}/{pvs}/live"]
            production = next(d for d in devices if d.get("TYPE") == "PVS5-METER-P")
            assert live["pv_p"] == float(production["p_3phsum_kw"])
            _status, document = await health(bridge)
            assert document["mqtt"]["state"] == "connected"
            assert document["mqtt"]["broker"] == broker.url()
            assert document["mqtt"]["messages_published"] >= len(configs) + len(serials)
            response = await bridge.get(DEVICE_LIST)
            assert response.status == 200
        # A clean stop says `offline` itself (a clean disconnect sends no last will).
        await watch.until(lambda latest: latest.get(f"{BASE}/status") == "offline", "offline")


async def test_home_assistant_restarting_gets_discovery_again(
    broker: Mosquitto, start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, inverters=2)
    async with watching(broker) as watch:
        await start_bridge(sim.url, clock=clock, mqtt={"url": broker.url()})
        serials = [device["SERIAL"] for device in await device_list(sim)]
        await watch.until(states_of(serials), "states")
        topic = f"{PREFIX}/sensor/{serials[-1]}/p_3phsum_kw/config"
        before = watch.counts[topic]
        async with aiomqtt.Client("127.0.0.1", broker.port) as home_assistant:
            await home_assistant.publish(f"{PREFIX}/status", "online", qos=1)
        await watch.until(lambda _latest: watch.counts[topic] > before, "discovery again")


async def test_the_last_will_says_offline_when_the_bridge_dies(
    broker: Mosquitto, simulator: Sim, tmp_path: Path
) -> None:
    listen, listen_ws = free_port(), free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1:{listen}"]\nlisten_ws = ["127.0.0.1:{listen_ws}"]\n'
        f'state_dir = "{tmp_path}"\n[upstream]\nurl = "{simulator.url}"\nws_url = "off"\n'
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PVS_BRIDGE_")}
    async with watching(broker) as watch:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "serve", "--config", str(config),
            "--mqtt", broker.url(),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await watch.until(lambda latest: latest.get(f"{BASE}/status") == "online", "online")
            await watch.until(lambda latest: any(watch.configs()), "discovery")
        finally:
            process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), WAIT)
        # No DISCONNECT was sent: the broker publishes the will, retained.
        await watch.until(lambda latest: latest.get(f"{BASE}/status") == "offline", "last will")
    async with watching(broker) as later:
        await later.until(lambda latest: latest.get(f"{BASE}/status") == "offline", "retained")


async def test_a_lower_lifetime_reading_is_never_published(
    broker: Mosquitto,
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.publish")
    clock = FakeClock()
    sim = await start_simulator(clock, inverters=2)
    async with watching(broker) as watch:
        bridge = await start_bridge(sim.url, clock=clock, mqtt={"url": broker.url()})
        devices = await device_list(sim)
        glitching, steady = devices[-2]["SERIAL"], devices[-1]["SERIAL"]
        await watch.until(states_of([glitching, steady]), "states")
        kept = watch.latest[f"{BASE}/{glitching}/state"]["ltea_3phsum_kwh"]
        sim.simulator.site.inverters[0].energy_offset_kwh -= 5.0  # a PVS glitch
        for _ in range(2):  # two refreshes with the lower reading, five minutes apart
            taken = watch.latest[f"{BASE}/{glitching}/state"]["taken_at"]
            await advance(clock, bridge, 300, step=60)
            await watch.until(
                lambda latest, taken=taken: (
                    latest[f"{BASE}/{glitching}/state"]["taken_at"] != taken
                ),
                "a new state",
            )
            now = {device["SERIAL"]: device for device in await device_list(sim)}
            lower = float(now[glitching]["ltea_3phsum_kwh"])
            assert lower < kept
            glitch_state = watch.latest[f"{BASE}/{glitching}/state"]
            assert glitch_state["ltea_3phsum_kwh"] == kept  # held back
            assert glitch_state["p_3phsum_kw"] == float(now[glitching]["p_3phsum_kw"])
            steady_state = watch.latest[f"{BASE}/{steady}/state"]
            assert steady_state["ltea_3phsum_kwh"] == float(now[steady]["ltea_3phsum_kwh"])
        section = await mqtt_health(bridge, lambda s: s["held_back_readings"] >= 2)
        assert section["held_back_readings"] >= 2  # one per refresh since the glitch
        logged = [r for r in caplog.records if "went down" in r.getMessage()]
        assert len(logged) == 1 and glitching in logged[0].getMessage()


async def test_a_device_is_offline_once_its_data_is_older_than_max_stale(
    broker: Mosquitto, start_simulator: SimulatorFactory, start_bridge: BridgeFactory
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, inverters=1)
    async with watching(broker) as watch:
        bridge = await start_bridge(
            sim.url, clock=clock, cache={"max_stale": 120.0}, mqtt={"url": broker.url()}
        )
        serials = [device["SERIAL"] for device in await device_list(sim)]
        topics = [f"{BASE}/{serial}/availability" for serial in serials]
        await watch.until(lambda latest: all(latest.get(t) == "online" for t in topics), "online")
        await sim.fault("down")
        await advance(clock, bridge, 100, step=5)
        assert all(watch.latest[t] == "online" for t in topics)  # 100 s old: still fine
        await advance(clock, bridge, 30, step=5)
        await watch.until(lambda latest: all(latest[t] == "offline" for t in topics), "offline")
        assert watch.latest[f"{BASE}/status"] == "online"  # the bridge itself is up
        await sim.fault("ok")
        await advance(clock, bridge, RECONNECT_MAX, step=5)
        await watch.until(lambda latest: all(latest[t] == "online" for t in topics), "back")


async def test_a_broker_that_is_down_never_affects_http_and_is_reconnected(
    start_simulator: SimulatorFactory, start_bridge: BridgeFactory, tmp_path: Path
) -> None:
    clock = FakeClock()
    sim = await start_simulator(clock, inverters=1)
    port = free_port()
    bridge = await start_bridge(sim.url, clock=clock, mqtt={"url": f"mqtt://127.0.0.1:{port}"})
    response = await bridge.get(DEVICE_LIST)
    assert response.status == 200
    section = await mqtt_health(bridge, lambda s: s["failed_connects"] >= 1)
    assert section["state"] == "disconnected" and section["failed_connects"] >= 1
    assert (await bridge.get(DEVICE_LIST)).status == 200
    async with mosquitto(tmp_path, port) as broker, watching(broker) as watch:
        await advance(clock, bridge, RECONNECT_MAX, step=1)
        await watch.until(lambda latest: latest.get(f"{BASE}/status") == "online", "online")
        serials = [device["SERIAL"] for device in await device_list(sim)]
        await watch.until(states_of(serials), "states")
        section = await mqtt_health(bridge, lambda s: s["state"] == "connected")
        assert section["connections"] == 1


async def test_a_refused_login_is_reported_without_the_password(
    tmp_path: Path,
    start_simulator: SimulatorFactory,
    start_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    sim = await start_simulator(clock, inverters=1)
    async with mosquitto(tmp_path, users={"bridge": "right-horse"}) as broker:
        refused = await start_bridge(
            sim.url, clock=clock, mqtt={"url": broker.url("bridge:wrong-battery")}
        )
        section = await mqtt_health(refused, lambda s: s["failed_connects"] >= 1)
        assert section["state"] == "disconnected"
        assert "authori" in section["last_error"].lower()
        assert section["broker"] == broker.url()  # no credentials shown
        assert (await refused.get(DEVICE_LIST)).status == 200
        _status, document = await health(refused)
        assert "wrong-battery" not in json.dumps(document)
        async with watching(broker, "bridge", "right-horse") as watch:
            accepted = await start_bridge(
                sim.url, clock=clock, mqtt={"url": broker.url("bridge:right-horse")}
            )
            await mqtt_health(accepted, lambda s: s["state"] == "connected")
            await watch.until(lambda latest: latest.get(f"{BASE}/status") == "online", "online")
    for secret in ("wrong-battery", "right-horse"):
        assert secret not in caplog.text


async def test_mqtt_is_off_without_a_url(simulator: Sim, start_bridge: BridgeFactory) -> None:
    bridge = await start_bridge(simulator.url)
    _status, document = await health(bridge)
    assert document["mqtt"] == {"state": "off"}
