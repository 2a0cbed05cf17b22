"""The windows of the per_day, per_week and per_month limits: the calendar day, ISO week
(Monday to Sunday) and month holding an instant, in the accounts' timezone.

One calendar for the account book (which limits lookups) and the shared store (which
counts them under period keys), so both always agree on where a window starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Day:
    """A calendar day and the windows it belongs to; instants are epoch seconds."""
    date: date
    start: float        # its midnight
    end: float          # the next day's midnight
    week_start: float   # the midnight of its ISO week's Monday
    month_start: float  # the midnight of its month's first day
    keys: tuple[str, str, str]  # "dYYYY-MM-DD", "w<Monday's date>", "mYYYY-MM"


class Calendar:
    """Days in one timezone; the current day is cached, so a caller asking once per lookup
    or per commit computes it once a day."""

    def __init__(self, tz: str = "UTC"):
        self.tz = ZoneInfo(tz)
        self._day: Day | None = None

    def midnight(self, d: date) -> float:
        # Wall-clock midnight; where DST skips midnight, zoneinfo maps it to the jump instant.
        return datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()

    def date(self, t: float) -> date:
        return datetime.fromtimestamp(t, self.tz).date()

    def day(self, t: float) -> Day:
        """The day holding instant `t`."""
        day = self._day
        if day is not None and day.start <= t < day.end:
            return day
        d = self.date(t)
        monday = d - timedelta(days=d.weekday())
        first = d.replace(day=1)
        day = Day(d, self.midnight(d), self.midnight(d + timedelta(days=1)), self.midnight(monday),
                  self.midnight(first),
                  (f"d{d.isoformat()}", f"w{monday.isoformat()}", f"m{d.year:04d}-{d.month:02d}"))
        if day.start <= t < day.end:  # cache only a well-formed day (DST oddities just recompute)
            self._day = day
        return day

    def span(self, t: float) -> tuple[float, float, str]:
        """(start, end, YYYY-MM-DD) of the day holding `t` (a rollup's day); an instant
        outside the calendar (before year 1, after 9999) has the day ""."""
        try:
            day = self.day(t)
        except (OverflowError, OSError, ValueError):
            return t, t, ""
        return day.start, day.end, day.keys[0][1:]

    def keys(self, t: float) -> tuple[str, str, str]:
        """The keys of the day, ISO week and month holding `t`."""
        return self.day(t).keys
