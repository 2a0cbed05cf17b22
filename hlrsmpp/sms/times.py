"""The SMPP time format of schedule_delivery_time and validity_period: absolute
``YYMMDDhhmmsstnnp`` (t tenths of a second, nn the offset from UTC in quarter hours, p
``+`` or ``-``), or relative ``YYMMDDhhmmss000R`` (years, months, days, ... from now)."""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone


class SmppTimeError(ValueError):
    """Not an SMPP time."""


def parse_smpp_time(value: str, now: float) -> float | None:
    """The instant (epoch seconds) a time field names, None when it is empty (immediate,
    or the SMSC's default validity)."""
    if not value:
        return None
    if len(value) != 16 or not value[:15].isdigit() or not value.isascii() or value[15] not in "+-R":
        raise SmppTimeError(f"{value!r} is not an SMPP time (YYMMDDhhmmsstnnp)")
    yy, mm, dd, hh, mi, ss = (int(value[i:i + 2]) for i in range(0, 12, 2))
    tenths, quarters, sign = int(value[12]), int(value[13:15]), value[15]
    if sign == "R":
        if hh > 23 or mi > 59 or ss > 59:
            raise SmppTimeError(f"{value!r}: a relative time's hours, minutes or seconds out of range")
        base = datetime.fromtimestamp(now, timezone.utc)
        months = base.month - 1 + mm + 12 * yy
        year, month = base.year + months // 12, months % 12 + 1
        day = min(base.day, calendar.monthrange(year, month)[1])
        moved = base.replace(year=year, month=month, day=day)
        return (moved + timedelta(days=dd, hours=hh, minutes=mi, seconds=ss)).timestamp()
    if quarters > 48:
        raise SmppTimeError(f"{value!r}: an offset of more than 12 hours from UTC")
    try:
        local = datetime(2000 + yy, mm, dd, hh, mi, ss, tenths * 100000, tzinfo=timezone.utc)
    except ValueError:
        raise SmppTimeError(f"{value!r}: no such date or time") from None
    offset = timedelta(minutes=15 * quarters)
    return (local - offset if sign == "+" else local + offset).timestamp()


def format_smpp_time(t: float) -> str:
    """An instant as an absolute SMPP time in UTC (query_sm's final_date)."""
    d = datetime.fromtimestamp(t, timezone.utc)
    return d.strftime("%y%m%d%H%M%S") + f"{d.microsecond // 100000}00+"
