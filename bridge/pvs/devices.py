"""The one heavy read: every device's data, once per refresh, as bytes and as a snapshot.

Whatever asks for the device list (the refresh-ahead, a client's cache miss, a
DeviceDetails that needs to know the serials) shares the read in flight. Each good read
yields the answer's exact bytes (legacy clients get them unchanged) and a site snapshot
parsed once, here, never per request. A read that looks broken next to the last good
one (the meters vanished, no device list at all: a PVS glitch that a reboot cures) is
rejected, so it never replaces good data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from bridge.flight import SingleFlight
from bridge.pvs.answer import Answer
from bridge.pvs.errors import Rejected
from bridge.site import SiteDataError, Snapshot, figures, render_vars
from bridge.site.legacy import parse_device_list
from bridge.site.varserver import INFO_PREFIX

log = logging.getLogger(__name__)

# The PVS's own secrets (its Wi-Fi key): never kept in memory, whatever a read brought.
SECRET_VARS = frozenset(INFO_PREFIX + field for field in figures.INFO_SECRETS)
# /sys/info fields varserver clients read (pypvs: before logging in, and every poll) that
# a legacy device list has no source for: in the rendered tree, empty, so that they work.
NO_LEGACY_SOURCE = ("flash_usage", "lmac", "ram_usage", "ssid", "sys_type")


@dataclass(frozen=True)
class DeviceRead:
    """One good device read: the answer as sent, its snapshot, and (2025) the raw variables
    (without the PVS's secrets)."""

    answer: Answer
    snapshot: Snapshot | None
    variables: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.variables is not None and not SECRET_VARS.isdisjoint(self.variables):
            kept = {k: v for k, v in self.variables.items() if k not in SECRET_VARS}
            object.__setattr__(self, "variables", kept)

    @cached_property
    def rendered(self) -> Mapping[str, str] | None:
        """The snapshot as the varserver tree (`/sys/info`, `/sys/devices`, `/sys/livedata`),
        rendered once per read, when first asked for (None without a snapshot)."""
        return None if self.snapshot is None else varserver_tree(self.snapshot)


ReadOnce = Callable[[], Awaitable[DeviceRead]]
Listener = Callable[[DeviceRead], None]


class DeviceReader:
    """Holds the latest good device read; `read()` gets a new one (shared when concurrent).

    Every good read with a snapshot goes to each listener (the consumers of the data:
    reboot watch, derived live frames, ...); a listener's error is logged, never raised.
    """

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self._listeners = tuple(listeners)
        self.latest: DeviceRead | None = None
        self._flight: SingleFlight[str, Answer] = SingleFlight()
        self.reads = 0
        self._withheld: Callable[[str], bool] = _nothing

    def withhold(self, hidden: Callable[[str], bool]) -> None:
        """Never keep a variable for which `hidden` is true (`clients.hidden_vars`)."""
        self._withheld = hidden

    @property
    def snapshot(self) -> Snapshot | None:
        """The newest snapshot, if any read has given one."""
        return None if self.latest is None else self.latest.snapshot

    async def read(self, read_once: ReadOnce) -> Answer:
        """Read the devices through `read_once` (one read for every concurrent caller)."""
        return await self._flight.run("devices", lambda: self._read(read_once))

    async def _read(self, read_once: ReadOnce) -> Answer:
        found = await read_once()
        if not found.answer.ok:
            return found.answer  # the PVS's refusal, passed on, never kept as data
        previous = self.snapshot
        why = suspicious_change(previous, found.snapshot)
        if why is not None:
            raise Rejected(f"DeviceList answer rejected: {why}")
        if found.variables is not None:
            kept = {k: v for k, v in found.variables.items() if not self._withheld(k)}
            found = replace(found, variables=kept)
        if found.snapshot is not None or previous is None:
            self.latest = found
        self.reads += 1
        if found.snapshot is not None:
            self._tell(found)
        return found.answer

    def _tell(self, found: DeviceRead) -> None:
        for listener in self._listeners:
            try:
                listener(found)
            except Exception:
                log.exception("a consumer of the device read failed")

    def forget_variables(self) -> None:
        """A write may have changed held variables: serve none until the next read."""
        if self.latest is not None and self.latest.variables is not None:
            self.latest = DeviceRead(self.latest.answer, self.latest.snapshot, None)

    def adopt(self, answer: Answer) -> None:
        """Take a stored legacy answer (warm start) as the latest read, if none is newer."""
        if self.latest is None:
            self.latest = DeviceRead(answer, legacy_snapshot(answer))


def _nothing(_name: str) -> bool:
    return False


def varserver_tree(snapshot: Snapshot) -> dict[str, str]:
    """`render_vars`, plus (legacy) the /sys/info fields clients need but nothing gives."""
    values = render_vars(snapshot)
    supervisor = snapshot.supervisor
    if supervisor is None or not supervisor.legacy_shaped:
        return values
    info = {name: text for name, text in values.items() if name.startswith(INFO_PREFIX)}
    for field in NO_LEGACY_SOURCE:
        info.setdefault(INFO_PREFIX + field, "")
    rest = {name: text for name, text in values.items() if name not in info}
    return dict(sorted(info.items())) | rest


def legacy_snapshot(answer: Answer) -> Snapshot | None:
    """The snapshot of a legacy DeviceList answer (None when it holds no device list)."""
    try:
        document = json.loads(answer.body)
        if not isinstance(document, dict):
            return None
        return parse_device_list(document, answer.fetched_wall)
    except (ValueError, RecursionError, SiteDataError):
        return None


def suspicious_change(previous: Snapshot | None, snapshot: Snapshot | None) -> str | None:
    """Why a new read must not replace `previous` (None when it may).

    A device reporting an error state is data, not a fault; losing the supervisor or a
    meter between two reads is the PVS glitching.
    """
    if previous is None:
        return None
    if snapshot is None:
        return "has no device list"
    lost = []
    if len(snapshot.meters) < len(previous.meters):
        lost.append("Power Meter")
    if snapshot.supervisor is None and previous.supervisor is not None:
        lost.append("PVS")
    if lost:
        return "lacks the " + " and ".join(sorted(lost)) + " device(s) the last good answer had"
    return None
