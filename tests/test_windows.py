"""Window sizes, local-midnight day windows and date partitions."""

import datetime
from zoneinfo import ZoneInfo

import pytest
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp

from transforms.windows import (
    LocalDayWindows,
    local_date,
    parse_duration,
    window_fn_for,
)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1h", 3600),
        ("30m", 1800),
        ("15min", 900),
        ("1d", 86400),
        ("90", 90),
        ("2 days", 172800),
    ],
    ids=["hour", "minutes", "min", "day", "bare-seconds", "days-word"],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "0h", "1x", "-1h", "h"],
    ids=["empty", "zero", "unit", "negative", "no-number"],
)
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def _assign(window_fn, moment: datetime.datetime):
    context = window.WindowFn.AssignContext(
        Timestamp.from_utc_datetime(moment.astimezone(datetime.UTC))
    )
    (assigned,) = window_fn.assign(context)
    return (
        assigned.start.to_utc_datetime(has_tz=True),
        assigned.end.to_utc_datetime(has_tz=True),
    )


def test_day_windows_start_at_local_midnight_in_shanghai():
    shanghai = ZoneInfo("Asia/Shanghai")
    start, end = _assign(
        window_fn_for(86400, "Asia/Shanghai"),
        datetime.datetime(2026, 11, 22, 0, 30, tzinfo=shanghai),
    )
    assert start == datetime.datetime(2026, 11, 22, tzinfo=shanghai)
    assert end == datetime.datetime(2026, 11, 23, tzinfo=shanghai)


def test_day_window_across_daylight_saving_is_23_hours():
    berlin = ZoneInfo("Europe/Berlin")
    start, end = _assign(
        LocalDayWindows(1, "Europe/Berlin"),
        datetime.datetime(2026, 3, 29, 12, tzinfo=berlin),
    )
    assert start == datetime.datetime(2026, 3, 29, tzinfo=berlin)
    assert end - start == datetime.timedelta(hours=23)


def test_week_windows_are_stable_blocks_of_seven_days():
    fn = LocalDayWindows(7, "Asia/Shanghai")
    shanghai = ZoneInfo("Asia/Shanghai")
    first = _assign(fn, datetime.datetime(2026, 11, 20, 12, tzinfo=shanghai))
    assert first[1] - first[0] == datetime.timedelta(days=7)
    assert _assign(fn, first[0].astimezone(shanghai)) == first
    assert (
        _assign(fn, (first[1] - datetime.timedelta(seconds=1)).astimezone(shanghai))
        == first
    )


def test_hour_windows_are_fixed_windows():
    assert window_fn_for(3600, "Asia/Shanghai") == window.FixedWindows(3600)


def test_longer_than_a_day_must_be_whole_days():
    with pytest.raises(ValueError, match="whole number of days"):
        window_fn_for(86400 + 3600, "Asia/Shanghai")


def test_local_date_uses_timezone():
    # 2026-11-21T17:00Z is already the 22nd in Beijing.
    micros = int(
        datetime.datetime(2026, 11, 21, 17, tzinfo=datetime.UTC).timestamp() * 1e6
    )
    assert local_date(micros, "Asia/Shanghai") == "2026-11-22"
    assert local_date(micros, "UTC") == "2026-11-21"
