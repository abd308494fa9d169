"""The minute history behind the home page's curve: bounded, in order, saved and reloaded.

A ring of per-minute means of production, consumption and net power and the last
lifetime counters, fed by the device reads and the PVS's live frames; written to
`server.state_dir` at stop and every 15 minutes (atomically, only after a change), read
back at start, a bad file ignored with one log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from bridge.cache.history import MINUTES, History
from bridge.cache.history_store import FILE_NAME, SAVE_EVERY, HistoryStore, kept_history
from bridge.clock import FakeClock, settle
from bridge.site.live import LiveState, merge

NOON = 1_750_536_000.0  # 2025-06-21 20:00 UTC, a whole minute


def totals(pv: float, load: float, pv_en: float = 100.0, load_en: float = 50.0) -> dict:
    return {
        "pv_p": pv,
        "site_load_p": load,
        "net_p": load - pv,
        "pv_en": pv_en,
        "site_load_en": load_en,
        "net_en": load_en - pv_en,
    }


def test_a_minute_keeps_the_mean_power_and_the_last_counters() -> None:
    history = History()
    assert history.add(NOON + 5, totals(2.0, 1.0, pv_en=100.0))
    assert history.add(NOON + 35, totals(4.0, 2.0, pv_en=100.1))
    assert history.add(NOON + 65, totals(1.0, 1.0, pv_en=100.2))
    first, second = history.samples()
    assert first == (int(NOON // 60), (3.0, 1.5, -1.5, 100.1, 50.0, -50.1))
    assert second[0] == first[0] + 1 and second[1][0] == 1.0


def test_figures_that_are_not_numbers_are_skipped() -> None:
    history = History()
    assert not history.add(NOON, {"pv_p": "3", "net_p": True, "site_load_p": float("nan")})
    assert not history.add(NOON, {"other": 1.0})
    assert len(history) == 0 and history.changes == 0
    assert history.add(NOON, {"pv_p": 1, "net_p": None})
    assert history.samples() == [(int(NOON // 60), (1.0, None, None, None, None, None))]


def test_the_ring_holds_48_hours_and_minutes_only_move_forward() -> None:
    history = History()
    for minute in range(MINUTES + 100):
        history.add(NOON + 60 * minute, totals(1.0, 1.0))
    assert len(history) == MINUTES == 48 * 60
    samples = history.samples()
    assert samples[0][0] == int(NOON // 60) + 100  # the oldest 100 minutes are gone
    assert not history.add(NOON, totals(9.0, 9.0))  # a clock set back: dropped
    assert history.samples()[-1] == samples[-1]


def test_samples_between_two_times_and_the_energy_in_them() -> None:
    history = History()
    for minute, (pv_en, load_en) in enumerate([(10.0, 20.0), (10.5, 20.2), (11.5, 20.4)]):
        history.add(NOON + 60 * minute, totals(1.0, 1.0, pv_en, load_en))
    assert [s[0] for s in history.samples(NOON + 60, NOON + 180)] == [
        int(NOON // 60) + 1,
        int(NOON // 60) + 2,
    ]
    since, energy = history.energy(NOON, NOON + 3600)
    assert since == NOON
    assert energy == {"pv_en": 1.5, "site_load_en": 0.4, "net_en": -1.1}
    assert history.energy(NOON + 3600, NOON + 7200) == (
        None,
        {"pv_en": None, "site_load_en": None, "net_en": None},
    )
    history.add(NOON + 240, totals(1.0, 1.0, pv_en=0.5, load_en=20.5))  # a new meter
    assert history.energy(NOON, NOON + 3600)[1]["pv_en"] is None


def test_live_frames_count_at_their_own_time() -> None:
    history = History()
    state = merge(LiveState(), {"time": NOON * 1000, "pv_p": 2.5, "net_p": -1.0})
    history.frame(state)
    history.frame(LiveState())  # no time yet: nothing
    assert history.samples() == [(int(NOON // 60), (2.5, None, -1.0, None, None, None))]


def test_the_store_writes_atomically_only_after_a_change(tmp_path: Path) -> None:
    clock = FakeClock(wall_start=NOON + 600)
    history = History()
    for minute in range(3):
        history.add(NOON + 60 * minute, totals(1.0 + minute, 1.0))
    store = HistoryStore(tmp_path / FILE_NAME, history, clock)
    assert store.save() and store.writes == 1
    assert not store.save()  # unchanged
    assert sorted(path.name for path in tmp_path.iterdir()) == [FILE_NAME]  # no temporary left
    document = json.loads((tmp_path / FILE_NAME).read_text())
    assert document["format"] == 1 and len(document["samples"]) == 3
    again = History()
    assert HistoryStore(tmp_path / FILE_NAME, again, clock).load() == 3
    assert again.samples() == history.samples()
    history.add(NOON + 180, totals(5.0, 1.0))
    assert store.save() and store.writes == 2


def test_minutes_older_than_48_hours_are_not_reloaded(tmp_path: Path) -> None:
    history = History()
    history.add(NOON, totals(1.0, 1.0))
    history.add(NOON + 3600, totals(2.0, 1.0))
    HistoryStore(tmp_path / FILE_NAME, history, FakeClock(wall_start=NOON + 3600)).save()
    later = FakeClock(wall_start=NOON + 48 * 3600 + 60)
    again = History()
    assert HistoryStore(tmp_path / FILE_NAME, again, later).load() == 1
    assert again.samples() == history.samples()[1:]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"format": 2, "samples": []}',
        b'{"format": 1, "samples": [[1, 2]]}',
        b'{"format": 1, "samples": [["x", 1, 1, 1, 1, 1, 1]]}',
    ],
)
def test_a_bad_file_is_ignored_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    (tmp_path / FILE_NAME).write_bytes(content)
    history = History()
    with caplog.at_level(logging.INFO, logger="bridge.cache.history_store"):
        assert HistoryStore(tmp_path / FILE_NAME, history, FakeClock()).load() == 0
    assert len(caplog.records) == 1 and "ignoring" in caplog.records[0].getMessage()
    assert caplog.records[0].levelno == logging.WARNING


async def test_saved_every_15_minutes_and_at_stop_only_where_state_dir_exists(
    tmp_path: Path,
) -> None:
    clock = FakeClock(wall_start=NOON)
    history = History()
    path = tmp_path / FILE_NAME
    async with kept_history(history, tmp_path, clock):
        await settle()  # the saver is asleep
        history.add(NOON, totals(1.0, 1.0))
        await clock.advance(SAVE_EVERY - 1)
        assert not path.exists()  # never per sample
        await clock.advance(1)
        for _ in range(500):  # the periodic write runs in a thread
            if path.exists():
                break
            await asyncio.sleep(0.01)
        assert len(json.loads(path.read_text())["samples"]) == 1
        history.add(NOON + SAVE_EVERY, totals(2.0, 1.0))
    assert len(json.loads(path.read_text())["samples"]) == 2  # saved at stop
    missing = tmp_path / "absent"
    async with kept_history(History(), missing, clock):
        pass
    assert not missing.exists()
