"""Every AppKey of the application, in one place: what `create_app` shares with handlers,
the lifecycle contexts, the CLI and the tests (typed, so a lookup cannot go wrong)."""

from __future__ import annotations

from aiohttp import web

from bridge.cache.answers import AnswerCache
from bridge.clock import Clock
from bridge.config import Config
from bridge.host.statefiles import StateDir
from bridge.host.tls_listener import TlsListener
from bridge.pvs.client import Upstream
from bridge.pvs.devices import DeviceReader
from bridge.pvs.feed import UpstreamFeed
from bridge.pvs.firmware import FirmwareBackend
from bridge.web.guard import Lifecycle
from bridge.web.health import HealthReporter
from bridge.web.metrics import Metrics

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
UPSTREAM = web.AppKey("upstream", Upstream)
CACHE = web.AppKey("cache", AnswerCache)
VARS_CACHE = web.AppKey("vars_cache", AnswerCache)
BACKEND = web.AppKey("backend", FirmwareBackend)
DEVICES = web.AppKey("devices", DeviceReader)
HEALTH = web.AppKey("health", HealthReporter)
METRICS = web.AppKey("metrics", Metrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
FEED = web.AppKey("feed", UpstreamFeed)
STATE_DIR = web.AppKey("state_dir", StateDir)  # server.state_dir: writable or not, and why
TLS = web.AppKey("tls", TlsListener)  # server.listen_tls: on, or off and why
# The small application of the live-feed listener (server.listen_ws), run by the CLI.
FEED_APP = web.AppKey("feed_app", web.Application)
