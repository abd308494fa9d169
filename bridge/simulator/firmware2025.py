"""The simulated PVS on 2025 firmware: login, sessions, varserver `/vars`, 403 to DeviceList.

What it does, as reported for PVS6 build 61840+ (see docs/pvs-api.md section 2):
- `supervisor/info` and `communication/interfaces` answer without a session;
- `GET /auth?login` with Basic `ssm_owner:<last 5 of serial>` (scheme in any case) gives a
  64-character session, in the JSON body and a cookie, valid for `session_ttl` seconds
  from login; `/auth?logout` ends it;
- `/vars` (GET query or POST body) with `name=`, `match=`, `fmt=obj|list`, `cache=`:
  401 without a session except for the few `/sys/info/` names clients read before
  logging in, 400 when nothing matches; `set=/name=value` with a session changes a
  variable (the answer's shape is this simulator's guess: the list form of that one);
- `/sys/info/wpa_key` (the PVS's Wi-Fi key) is readable with a session, as on the PVS:
  `SIMULATED_WIFI_KEY`, so tests can prove that it never gets through the bridge;
- every `Command=` answers the 403 body, even with a session; the other path-style
  endpoints need a session.
The values are the legacy mode's, renamed: one site model, two ways to read it.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bridge.clock import Clock
from bridge.simulator import legacy
from bridge.simulator.feed import TELEMETRY_VAR
from bridge.simulator.model import Site
from bridge.simulator.server import FORBIDDEN_BODY, Simulator, SimulatorOptions

USER = "ssm_owner"
PRE_LOGIN_NAMES = frozenset({"/sys/info/serialnum", "/sys/info/ssid", "/sys/info/lmac"})
OPEN_PATHS = frozenset({"supervisor/info", "communication/interfaces"})
MAX_SESSIONS = 64
MAX_BODY = 1024
DEFAULT_SWVER = "2025.09, Build 61845"
DEFAULT_BUILD = 61845
# The PVS's own Wi-Fi key, readable by any logged-in client on a real PVS: a fake one,
# recognisable, so tests can prove the bridge never lets it out.
WPA_KEY_VAR = "/sys/info/wpa_key"
SIMULATED_WIFI_KEY = "SIMULATED-WIFI-KEY-1234"

# varserver field -> legacy DeviceList field, per device kind (the simulator's own table).
INVERTER_FIELDS = {
    "freqHz": "freq_hz",
    "i3phsumA": "i_3phsum_a",
    "iMppt1A": "i_mppt1_a",
    "ltea3phsumKwh": "ltea_3phsum_kwh",
    "p3phsumKw": "p_3phsum_kw",
    "pMppt1Kw": "p_mpptsum_kw",
    "tHtsnkDegc": "t_htsnk_degc",
    "vMppt1V": "v_mppt1_v",
    "vln3phavgV": "vln_3phavg_v",
}
METER_FIELDS = {
    "ctSclFctr": "ct_scl_fctr",
    "freqHz": "freq_hz",
    "i1A": "i1_a",
    "i2A": "i2_a",
    "negLtea3phsumKwh": "neg_ltea_3phsum_kwh",
    "netLtea3phsumKwh": "net_ltea_3phsum_kwh",
    "p1Kw": "p1_kw",
    "p2Kw": "p2_kw",
    "p3phsumKw": "p_3phsum_kw",
    "posLtea3phsumKwh": "pos_ltea_3phsum_kwh",
    "q3phsumKvar": "q_3phsum_kvar",
    "s3phsumKva": "s_3phsum_kva",
    "totPfRto": "tot_pf_rto",
    "v12V": "v12_v",
    "v1nV": "v1n_v",
    "v2nV": "v2n_v",
}


def _iso_from_pvs(pvs: str) -> str:
    year, month, day, hour, minute, second = pvs.split(",")
    return f"{year}-{month}-{day}T{hour}:{minute}:{second}Z"


def sw_rev(swver: str, build: int | None) -> str:
    """`2025.09, Build 61845` -> `2025.09.04.61845`, the varserver's spelling."""
    release = swver.split(",", maxsplit=1)[0].strip()
    return f"{release}.04.{build}"


def variables(site: Site, swver: str, build: int | None) -> dict[str, str]:
    """Every variable the simulated varserver holds right now, in a stable order."""
    now = site.clock.wall()
    devices = legacy.device_list(site, swver)["devices"]
    pvs = devices[0]
    values: dict[str, str] = {
        "/sys/info/active_interface": "wan",
        "/sys/info/boardtype": "800-00000-r06",
        "/sys/info/cpu_usage": legacy._fmt(float(pvs["dl_cpu_load"]) * 100, 1),
        "/sys/info/flash_usage": "31",
        "/sys/info/fwrev": "1.0.0",
        "/sys/info/hwrev": "6.0",
        "/sys/info/lmac": "00:22:f2:00:00:01",
        "/sys/info/model": site.model,
        "/sys/info/ram_usage": "38",
        "/sys/info/serialnum": site.serial,
        "/sys/info/ssid": "SunPower" + site.serial[-5:],
        "/sys/info/sw_rev": sw_rev(swver, build),
        "/sys/info/sys_type": "PV-only",
        "/sys/info/uptime": f"{site.uptime():.2f}",
    }
    meters = [device for device in devices if device["DEVICE_TYPE"] == "Power Meter"]
    inverters = [device for device in devices if device["DEVICE_TYPE"] == "Inverter"]
    for kind, group, table in (
        ("meter", meters, METER_FIELDS),
        ("inverter", inverters, INVERTER_FIELDS),
    ):
        for index, device in enumerate(group):
            prefix = f"/sys/devices/{kind}/{index}/"
            values[prefix + "sn"] = device["SERIAL"]
            values[prefix + "prodMdlNm"] = device["MODEL"]
            values[prefix + "msmtEps"] = _iso_from_pvs(device["DATATIME"])
            for var, field in table.items():
                if field in device:
                    values[prefix + var] = device[field]
    values["/sys/livedata/time"] = str(int(now))
    for name, value in site.livedata(now).items():
        values["/sys/livedata/" + name] = legacy._fmt(value, 2 if name.endswith("_en") else 4)
    return values


def _error(status: int, path: str, error: str) -> web.Response:
    body = f'{{ "status":{status}, "error" : "{error}", "path":"{path}" }}\n'
    return web.Response(status=status, text=body, content_type="application/json")


class Simulator2025(Simulator):
    """A fake PVS on 2025 firmware; `/_sim/stats` also counts logins and each /vars query."""

    def __init__(self, options: SimulatorOptions | None = None, clock: Clock | None = None) -> None:
        super().__init__(options, clock)
        self.password = self.site.serial[-5:].upper()
        self.sessions: dict[str, float] = {}  # token -> monotonic expiry
        self.var_caches: dict[tuple[str, str], list[str]] = {}  # (token, cache id) -> names
        self.logins = 0
        self.login_failures = 0
        self.vars_queries: Counter[str] = Counter()
        self.written: dict[str, str] = {}  # values set with `set=`, shown by later reads
        self.writes = 0
        self.feed.requires_enable = True  # 2025.10+: the live feed is off until enabled

    def app(self) -> web.Application:
        """The legacy app plus `/auth` and `/vars`."""
        app = super().app()
        app.router.add_get("/auth", self._auth)
        app.router.add_route("*", "/vars", self._vars)
        return app

    def stats_document(self) -> dict[str, Any]:
        """The legacy counters plus logins, sessions, each /vars query and the writes."""
        document = super().stats_document()
        document.update(
            logins=self.logins,
            login_failures=self.login_failures,
            sessions=len(self._live_sessions()),
            vars_queries=dict(self.vars_queries),
            writes=self.writes,
        )
        return document

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.logins = self.login_failures = 0
        self.vars_queries = Counter()
        return await super()._reset_stats(request)

    def _live_sessions(self) -> dict[str, float]:
        now = self.clock.monotonic()
        for token in [token for token, expiry in self.sessions.items() if expiry <= now]:
            del self.sessions[token]
        return self.sessions

    def _session(self, request: web.Request) -> str | None:
        token = request.cookies.get("session", "")
        return token if token in self._live_sessions() else None

    async def _auth(self, request: web.Request) -> web.Response:
        await self._delay(False)
        if "logout" in request.query:
            token = self._session(request)
            if token is not None:
                del self.sessions[token]
            return web.json_response({"result": "succeed"})
        if "login" not in request.query:
            return _error(400, "/auth", "Bad Request")
        if not self._credentials_ok(request.headers.get("Authorization", "")):
            self.login_failures += 1
            return _error(401, "/auth", "Unauthorized")
        self.logins += 1
        sessions = self._live_sessions()
        while len(sessions) >= MAX_SESSIONS:
            del sessions[min(sessions, key=sessions.__getitem__)]
        token = secrets.token_hex(32)
        sessions[token] = self.clock.monotonic() + self.options.session_ttl
        body = self.options.login_body
        if body == "none":
            response = web.Response(status=200)
        else:
            response = web.json_response({"session": token} if body == "session" else {})
        response.set_cookie("session", token, httponly=True, secure=True, path="/")
        return response

    def _credentials_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(f"{user}:{password}", f"{USER}:{self.password}")

    async def _vars(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            raw = (await request.content.read(MAX_BODY + 1)).decode("utf-8", "replace")
        elif request.method == "GET":
            raw = request.query_string
        else:
            return _error(405, "/vars", "Method Not Allowed")
        if len(raw) > MAX_BODY:
            return _error(413, "/vars", "Request Entity Too Large")
        await self._delay(False)
        query = dict(parse_qsl(raw.strip(), keep_blank_values=True))
        self.vars_queries[raw.strip()] += 1
        token = self._session(request)
        names = [name for name in query.get("name", "").split(",") if name]
        if token is None and not (names and set(names) <= PRE_LOGIN_NAMES and "match" not in query):
            return _error(401, "/vars", "Unauthorized")
        table = variables(self.site, self.options.swver, self.options.build)
        table[WPA_KEY_VAR] = SIMULATED_WIFI_KEY
        table.update(self.written)
        if self.feed.supported:  # a PVS5 has no feed: the variable is unknown there (400)
            table[TELEMETRY_VAR] = "1" if self.feed.telemetry else "0"
        if "set" in query:
            return self._write(query["set"], token, table)
        selected = self._select(table, query, names, token)
        if not selected:
            return _error(400, "/vars", "Bad Request")
        if query.get("fmt", "list") == "obj":
            document: Any = {name: table[name] for name in selected}
        else:
            document = {
                "count": len(selected),
                "values": [{"name": name, "value": table[name]} for name in selected],
            }
        return web.Response(
            text=json.dumps(document, indent=2) + "\n", content_type="application/json"
        )

    def _write(self, assignment: str, token: str | None, table: dict[str, str]) -> web.Response:
        """`set=/name=value`: change a variable; the feed's switch is a live one."""
        name, sep, value = assignment.partition("=")
        if token is None or not sep or name not in table:
            return _error(400 if token else 401, "/vars", "Bad Request")
        if name == TELEMETRY_VAR:
            if value not in ("0", "1"):
                return _error(400, "/vars", "Bad Request")
            self.feed.set_telemetry(value == "1")  # until the next reboot
            if value == "1":
                self.stats.telemetry_enables += 1
        else:
            self.written[name] = value  # later reads see it, as on the device
        self.writes += 1
        written = {"count": 1, "values": [{"name": name, "value": value}]}
        return web.Response(
            text=json.dumps(written, indent=2) + "\n", content_type="application/json"
        )

    def _select(
        self, table: dict[str, str], query: dict[str, str], names: list[str], token: str | None
    ) -> list[str]:
        cache_id = query.get("cache")
        if names:
            selected = [name for name in names if name in table]
        elif "match" in query:
            selected = [name for name in table if query["match"] in name]
        elif cache_id and token and (token, cache_id) in self.var_caches:
            return [name for name in self.var_caches[token, cache_id] if name in table]
        else:
            return []
        if cache_id and token:
            if len(self.var_caches) >= MAX_SESSIONS * 4:
                self.var_caches.clear()
            self.var_caches[token, cache_id] = selected
        return selected

    async def _dl_cgi(self, request: web.Request) -> web.Response:
        # New firmware refuses the legacy commands, DeviceList included, session or not.
        await self._delay(False)
        return web.Response(status=403, body=FORBIDDEN_BODY, content_type="application/json")

    async def _dl_cgi_path(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        if tail not in OPEN_PATHS and self._session(request) is None:
            return _error(401, f"/cgi-bin/dl_cgi/{tail}", "Unauthorized")
        return await super()._dl_cgi_path(request)


def options_for_2025(options: SimulatorOptions) -> SimulatorOptions:
    """New firmware reports a 2025 build unless the options name one explicitly."""
    if options.build is not None and options.build < 61840:
        options.build = DEFAULT_BUILD
        options.swver = DEFAULT_SWVER
    return options
