"""bridge/site/live.py: the feed's power frames parsed, merged and derived (pure functions)."""

from __future__ import annotations

import json

import pytest

from bridge.site.live import (
    LiveState,
    changed,
    from_totals,
    merge,
    parse_frame,
    power_frame,
    seconds,
)
from bridge.site.model import LiveTotals


def params_of(text: str) -> dict[str, object]:
    document = json.loads(text)
    assert document["notification"] == "power"
    params: dict[str, object] = document["params"]
    return params


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, 1_700_000_000.0),  # seconds
        (1_700_000_000_500, 1_700_000_000.5),  # milliseconds
        (1_700_000_000.25, 1_700_000_000.25),
        (0, 0.0),
        (99_999_999_999, 99_999_999_999.0),  # just below the millisecond threshold
        (100_000_000_000, 100_000_000.0),  # the threshold itself is milliseconds
    ],
)
def test_time_in_seconds_or_milliseconds_is_normalised_to_seconds(
    value: float, expected: float
) -> None:
    assert seconds(value) == expected


@pytest.mark.parametrize("value", [None, "1700000000", True, False, [1], {"t": 1}])
def test_a_time_that_is_not_a_number_is_none(value: object) -> None:
    assert seconds(value) is None


def test_merge_keeps_every_field_across_partial_frames() -> None:
    state = merge(LiveState(), {"time": 1_700_000_000, "pv_p": 3.0, "net_p": -1.0, "soc": 0.5})
    state = merge(state, {"time": 1_700_000_001_000, "pv_p": 3.2})  # milliseconds now
    state = merge(state, {"time": 1_700_000_002, "net_p": -0.8})
    assert dict(state.fields) == {"pv_p": 3.2, "net_p": -0.8, "soc": 0.5}
    assert state.time == 1_700_000_002.0
    assert params_of(state.frame()) == {
        "time": 1_700_000_002.0,
        "pv_p": 3.2,
        "net_p": -0.8,
        "soc": 0.5,
    }


def test_merge_keeps_the_last_time_when_a_frame_has_none_usable() -> None:
    state = merge(LiveState(), {"time": 1_700_000_000, "pv_p": 1.0})
    for params in ({"pv_p": 2.0}, {"time": "soon", "pv_p": 3.0}):
        state = merge(state, params)
        assert state.time == 1_700_000_000.0
    assert state.fields["pv_p"] == 3.0


def test_merge_leaves_the_state_it_was_given_unchanged() -> None:
    before = merge(LiveState(), {"time": 1, "pv_p": 1.0})
    after = merge(before, {"time": 2, "pv_p": 2.0, "soc": 0.1})
    assert dict(before.fields) == {"pv_p": 1.0} and before.time == 1.0
    assert dict(after.fields) == {"pv_p": 2.0, "soc": 0.1} and after.time == 2.0
    with pytest.raises(TypeError):
        after.fields["pv_p"] = 9.0  # type: ignore[index]


def test_the_frame_of_an_empty_state_has_no_params() -> None:
    assert LiveState().frame() == '{"notification":"power","params":{}}'


def test_power_frame_is_the_pvs_shape_compact() -> None:
    text = power_frame({"time": 1.0, "pv_p": 2})
    assert text == '{"notification":"power","params":{"time":1.0,"pv_p":2}}'
    assert parse_frame(text) == {"time": 1.0, "pv_p": 2}


def test_parse_frame_reads_text_and_bytes() -> None:
    text = '{"notification": "power", "params": {"time": 1700000000, "soc": 0.5}}'
    assert parse_frame(text) == parse_frame(text.encode()) == {"time": 1700000000, "soc": 0.5}


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "not json",
        "[1, 2]",
        '"power"',
        "{",
        b"\xff\xfe",
        '{"params": {"time": 1}}',  # no notification
        '{"notification": "energy", "params": {"time": 1}}',  # another notification
        '{"notification": "POWER", "params": {"time": 1}}',
        '{"notification": "power"}',  # no params
        '{"notification": "power", "params": [1, 2]}',
        '{"notification": "power", "params": "x"}',
        "[" * 100_000,  # nested past the stack
    ],
)
def test_parse_frame_refuses_junk_and_other_notifications(junk: str | bytes) -> None:
    assert parse_frame(junk) is None


def test_from_totals_skips_what_the_site_does_not_have() -> None:
    totals = LiveTotals(pv_p=3.0, pv_en=1000.0, net_p=-1.0, net_en=None, soc=None, ess_p=0.0)
    assert from_totals(totals, 1_700_000_000.0) == {
        "time": 1_700_000_000.0,
        "pv_p": 3.0,
        "pv_en": 1000.0,
        "net_p": -1.0,
        "ess_p": 0.0,  # zero is a value, not a gap
    }
    assert from_totals(LiveTotals(), 5.0) == {"time": 5.0}


def test_changed_keeps_time_and_only_the_differing_fields() -> None:
    state = merge(LiveState(), {"time": 1, "pv_p": 3.0, "net_p": -1.0, "soc": 0.5})
    params = {"time": 2.0, "pv_p": 3.0, "net_p": -0.5, "soc": 0.5, "ess_p": 0.0}
    assert changed(state, params) == {"time": 2.0, "net_p": -0.5, "ess_p": 0.0}
    assert next(iter(changed(state, params))) == "time"  # time first, as the PVS sends it


def test_changed_keeps_time_even_when_nothing_else_changed() -> None:
    state = merge(LiveState(), {"time": 1, "pv_p": 3.0})
    assert changed(state, {"time": 2.0, "pv_p": 3.0}) == {"time": 2.0}


def test_changed_against_an_empty_state_is_everything() -> None:
    params = from_totals(LiveTotals(pv_p=1.0, net_p=2.0), 3.0)
    assert changed(LiveState(), params) == params


def test_changed_without_time_has_no_time() -> None:
    state = merge(LiveState(), {"time": 1, "pv_p": 3.0})
    assert changed(state, {"pv_p": 4.0, "net_p": 1.0}) == {"pv_p": 4.0, "net_p": 1.0}


def test_a_derived_frame_merged_back_is_the_totals() -> None:
    totals = LiveTotals(pv_p=3.0, net_p=-1.0, site_load_p=2.0)
    state = merge(LiveState(), from_totals(totals, 10.0))
    delta = changed(state, from_totals(LiveTotals(pv_p=3.5, net_p=-1.0, site_load_p=2.5), 11.0))
    state = merge(state, params_of(power_frame(delta)))
    assert dict(state.fields) == {"pv_p": 3.5, "net_p": -1.0, "site_load_p": 2.5}
    assert state.time == 11.0
