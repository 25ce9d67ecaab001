"""Report periods: local calendar days and weeks, as UTC bounds.

A monitoring centre's daily report covers one local calendar day, its weekly report
one Monday-to-Sunday week, each compared with the period just before it. The bounds
are local midnights of the configured timezone (the pipeline's ``--timezone``, whose
dates also name the ``date=`` partitions), converted to UTC like the tables' columns.

    >>> week = Period.week(datetime.date(2026, 11, 22))
    >>> week.label, week.previous().label
    ('2026-11-16 to 2026-11-22', '2026-11-09 to 2026-11-15')
    >>> Period.day(datetime.date(2026, 11, 22)).start
    datetime.datetime(2026, 11, 21, 16, 0, tzinfo=datetime.timezone.utc)
"""

import dataclasses
import datetime
from zoneinfo import ZoneInfo

from schemas.timezone import DEFAULT_TIMEZONE


@dataclasses.dataclass(frozen=True)
class Period:
    """``days`` local calendar days from ``first_day`` in ``timezone``."""

    first_day: datetime.date
    days: int = 1
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"a period has at least one day, not {self.days}")
        ZoneInfo(self.timezone)  # an unknown name fails here, not in a query

    @classmethod
    def day(cls, day: datetime.date, timezone: str = DEFAULT_TIMEZONE) -> "Period":
        return cls(day, 1, timezone)

    @classmethod
    def week(cls, day: datetime.date, timezone: str = DEFAULT_TIMEZONE) -> "Period":
        """The Monday-to-Sunday week that holds ``day``."""
        return cls(day - datetime.timedelta(days=day.weekday()), 7, timezone)

    @property
    def last_day(self) -> datetime.date:
        return self.first_day + datetime.timedelta(days=self.days - 1)

    @property
    def start(self) -> datetime.datetime:
        """The first local midnight, in UTC (inclusive)."""
        return _local_midnight_utc(self.first_day, self.timezone)

    @property
    def end(self) -> datetime.datetime:
        """The local midnight after the last day, in UTC (exclusive)."""
        return _local_midnight_utc(
            self.last_day + datetime.timedelta(days=1), self.timezone
        )

    def previous(self) -> "Period":
        """The period of the same length just before this one."""
        return dataclasses.replace(
            self, first_day=self.first_day - datetime.timedelta(days=self.days)
        )

    @property
    def label(self) -> str:
        if self.days == 1:
            return self.first_day.isoformat()
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()}"

    def as_dict(self) -> dict[str, str]:
        """Bounds and label, as JSON reports carry them."""
        zone = ZoneInfo(self.timezone)
        return {
            "label": self.label,
            "timezone": self.timezone,
            "start": self.start.astimezone(zone).isoformat(),
            "end": self.end.astimezone(zone).isoformat(),
        }


def _local_midnight_utc(day: datetime.date, timezone: str) -> datetime.datetime:
    local = datetime.datetime.combine(day, datetime.time(), tzinfo=ZoneInfo(timezone))
    return local.astimezone(datetime.UTC)
