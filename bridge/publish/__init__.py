"""Consumers that push the site out: MQTT with Home Assistant discovery.

Beside `web/` in the layers: it reads the site model and the device reads (`pvs` types),
never asks the PVS anything itself, and is wired in `app/` (a DeviceReader listener and a
cleanup context).
"""

from __future__ import annotations

from bridge.publish.mqtt import MqttPublisher

__all__ = ["MqttPublisher"]
