"""The calendar of the day / ISO week / month limits, shared by the account book and the
shared store's period keys."""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, strategies as st

from hlrsmpp.accounts.calendar import Calendar
from hlrsmpp.accounts import AccountBook


def at(y, m, d, hh=0, mm=0, ss=0.0, tz="UTC") -> float:
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(tz)).timestamp() + ss


def test_midnight_belongs_to_the_new_day():
    cal = Calendar("UTC")
    before, midnight = cal.day(at(2026, 3, 4) - 1e-3), cal.day(at(2026, 3, 4))
    assert before.date == date(2026, 3, 3) and midnight.date == date(2026, 3, 4)
    assert before.end == midnight.start == at(2026, 3, 4)
    assert midnight.keys == ("d2026-03-04", "w2026-03-02", "m2026-03")


def test_iso_week_one_starting_in_the_previous_year():
    # 2025-W01 runs from Monday 2024-12-30: a lookup on 2 January counts in a week that
    # started in December, and in a month that started on 1 January.
    day = Calendar("UTC").day(at(2025, 1, 2, 12))
    assert day.keys == ("d2025-01-02", "w2024-12-30", "m2025-01")
    assert day.week_start == at(2024, 12, 30)
    assert day.month_start == at(2025, 1, 1)


def test_month_end():
    cal = Calendar("UTC")
    last = cal.day(at(2026, 2, 1) - 1e-3)
    assert last.keys[2] == "m2026-01" and last.month_start == at(2026, 1, 1)
    first = cal.day(at(2026, 2, 1))
    assert first.keys[2] == "m2026-02" and first.month_start == at(2026, 2, 1)
    assert cal.day(at(2024, 2, 29, 23, 59)).keys == ("d2024-02-29", "w2024-02-26", "m2024-02")


def test_a_timezone_east_of_utc():
    # 22:30 UTC on Sunday 31 May is already Monday 1 June in Sofia (UTC+3 in summer).
    cal = Calendar("Europe/Sofia")
    t = datetime(2026, 5, 31, 22, 30, tzinfo=timezone.utc).timestamp()
    day = cal.day(t)
    assert day.keys == ("d2026-06-01", "w2026-06-01", "m2026-06")
    assert day.start == day.week_start == day.month_start == at(2026, 6, 1, tz="Europe/Sofia")
    assert day.start == datetime(2026, 5, 31, 21, tzinfo=timezone.utc).timestamp()
    assert Calendar("UTC").day(t).keys == ("d2026-05-31", "w2026-05-25", "m2026-05")


def test_a_dst_change_day_has_its_real_length():
    cal = Calendar("Europe/Sofia")
    day = cal.day(at(2026, 3, 29, 12, tz="Europe/Sofia"))  # clocks go forward at 03:00
    assert day.end - day.start == 23 * 3600


def test_the_cached_day_is_left_when_time_moves_on_or_back():
    cal = Calendar("UTC")
    assert cal.day(at(2026, 1, 10, 5)).date == date(2026, 1, 10)
    assert cal.day(at(2026, 1, 11, 5)).date == date(2026, 1, 11)
    assert cal.day(at(2026, 1, 9, 5)).date == date(2026, 1, 9)


def test_the_account_book_uses_the_calendar():
    book = AccountBook(tz="Asia/Kolkata")
    t = at(2025, 1, 2, 3, tz="Asia/Kolkata")
    day = Calendar("Asia/Kolkata").day(t)
    assert book.periods(t) == (day.start, day.week_start, day.month_start)


TIMEZONES = ["UTC", "Europe/Sofia", "America/New_York", "Asia/Kolkata", "Pacific/Chatham", "Australia/Lord_Howe"]


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False), st.sampled_from(TIMEZONES))
def test_agrees_with_isocalendar(t, tz):
    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(t, zone).date()
    day = Calendar(tz).day(t)
    assert day.date == d
    year, week, _ = d.isocalendar()
    monday = date.fromisoformat(day.keys[1][1:])
    assert monday.isocalendar() == (year, week, 1)
    assert day.keys[0] == f"d{d.isoformat()}" and day.keys[2] == f"m{d.year:04d}-{d.month:02d}"
    # Each start is the wall-clock midnight of its first day, and the windows nest.
    assert datetime.fromtimestamp(day.week_start, zone).date() in (monday, monday + timedelta(days=1))
    assert day.month_start <= day.start and day.week_start <= day.start < day.end
    assert datetime.fromtimestamp(day.month_start, zone).date().day in (1, 2)
