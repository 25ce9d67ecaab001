"""Event-time windows: durations, window functions and the window's calendar date.

Windows shorter than a day are Beam ``FixedWindows`` aligned to the epoch (for whole
hours that is also local-hour aligned in every zone with a whole-hour offset). Windows
of a day or longer start at local midnight in the configured timezone, so a "day" is
the analyst's day in Beijing, not in UTC; ``LocalDayWindows`` assigns them, daylight
saving time included.
"""

import datetime
import re
from zoneinfo import ZoneInfo

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp

SECONDS_PER_DAY = 86_400
_DURATION = re.compile(r"^\s*(\d+)\s*(s|sec|m|min|h|hr|d|day|days)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hr": 3600,
    "d": SECONDS_PER_DAY,
    "day": SECONDS_PER_DAY,
    "days": SECONDS_PER_DAY,
}


def parse_duration(text: str) -> int:
    """Return a duration such as ``1h``, ``30m``, ``15min``, ``1d``, ``90s`` in seconds.

    A bare number is seconds. Raises ``ValueError`` with the accepted forms otherwise.
    """
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(
            f"{text!r} is not a duration: use a positive number with s, m, h or d "
            "(e.g. 1h, 30m, 1d)"
        )
    unit = (match.group(2) or "s").lower()
    return int(match.group(1)) * _UNIT_SECONDS[unit]


def micros_to_datetime(micros: int) -> datetime.datetime:
    """Microseconds since the epoch -> aware UTC datetime."""
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        microseconds=micros
    )


def local_date(micros: int, timezone: str) -> str:
    """The ``YYYY-MM-DD`` date, in ``timezone``, of an instant in epoch microseconds."""
    return micros_to_datetime(micros).astimezone(ZoneInfo(timezone)).date().isoformat()


class LocalDayWindows(window.NonMergingWindowFn):
    """Windows of ``days`` whole days starting at local midnight in ``timezone``.

    Days are counted from 1970-01-01 in that zone, so a 7-day window is the same week
    in every run. A day with a daylight-saving change is 23 or 25 hours long.
    """

    def __init__(self, days: int, timezone: str):
        if days < 1:
            raise ValueError("LocalDayWindows needs at least one day")
        self.days = days
        self.timezone = timezone
        ZoneInfo(timezone)  # Fails here, at construction, for an unknown zone.

    def _midnight(self, date: datetime.date) -> Timestamp:
        local = datetime.datetime.combine(
            date, datetime.time(), ZoneInfo(self.timezone)
        )
        return Timestamp.from_utc_datetime(local.astimezone(datetime.UTC))

    def assign(
        self, context: window.WindowFn.AssignContext
    ) -> list[window.IntervalWindow]:
        moment = context.timestamp.to_utc_datetime(has_tz=True).astimezone(
            ZoneInfo(self.timezone)
        )
        offset_days = (moment.date() - datetime.date(1970, 1, 1)).days
        first = moment.date() - datetime.timedelta(days=offset_days % self.days)
        start = self._midnight(first)
        end = self._midnight(first + datetime.timedelta(days=self.days))
        return [window.IntervalWindow(start, end)]

    def get_window_coder(self) -> coders.Coder:
        return coders.IntervalWindowCoder()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalDayWindows) and (self.days, self.timezone) == (
            other.days,
            other.timezone,
        )

    def __hash__(self) -> int:
        return hash((self.days, self.timezone))


def window_fn_for(size_seconds: int, timezone: str) -> beam.transforms.window.WindowFn:
    """The window function for ``--window``: fixed windows, or local days for a day
    or more."""
    if size_seconds >= SECONDS_PER_DAY and size_seconds % SECONDS_PER_DAY == 0:
        return LocalDayWindows(size_seconds // SECONDS_PER_DAY, timezone)
    if size_seconds > SECONDS_PER_DAY:
        raise ValueError("a window longer than a day must be a whole number of days")
    return window.FixedWindows(size_seconds)
