"""The in-memory account policy: every refusal, its order, billing, windows, bans."""
import dataclasses
import json
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from hlrsmpp.accounts import MICRO, Account, AccountBook, Limits, Refusal, from_micro, to_micro
from hlrsmpp.accounts.passwords import verify_password
from hlrsmpp.smpp.status import Status

R = Refusal
SOFIA = ZoneInfo("Europe/Sofia")


def at(local: str, tz=SOFIA) -> float:
    """Epoch of a wall-clock time in Sofia."""
    return datetime.fromisoformat(local).replace(tzinfo=tz).timestamp()


T0 = at("2026-03-10 12:00:00")


def acct(**kw) -> Account:
    kw.setdefault("system_id", "acme")
    kw.setdefault("password", "s3cret")
    return Account.from_config(kw)


def book(*accounts, **kw) -> AccountBook:
    kw.setdefault("tz", "Europe/Sofia")
    return AccountBook(accounts, **kw)


# --- amounts ------------------------------------------------------------------------

def test_to_micro_is_exact():
    assert to_micro(0.1) == 100_000
    assert to_micro("0.000001") == 1
    assert to_micro(100) == 100 * MICRO
    assert to_micro("12.5") == 12_500_000
    assert from_micro(100_000) == "0.1" and from_micro(100 * MICRO) == "100" and from_micro(0) == "0"
    for bad in ("0.0000001", "abc", float("nan"), float("inf"), True):
        with pytest.raises(ValueError):
            to_micro(bad)


def test_100000_charges_of_a_tenth_are_exact():
    a = acct(credit=10_000)
    b = book(a)
    for i in range(100_000):
        assert b.admit(a, "91", T0 + i) is None
    assert a.credit == 0 and a.packages[0].credit == 0
    assert b.admit(a, "91", T0 + 200_000) is R.NO_CREDIT


# --- refusal mapping --------------------------------------------------------------------

def test_every_refusal_has_an_answer_for_every_api():
    for r in Refusal:
        assert isinstance(r.smpp_status, Status)
        assert r.prepaid_answer.isupper()
        assert r.http_error.line.startswith(f"ERROR - {r.http_error.code} --> ")
    assert R.EXPIRED.smpp_status is Status.RACCEXPIRY
    assert R.NO_COVERAGE.smpp_status is Status.RCOVERR
    assert R.NO_CREDIT.smpp_status is Status.RINSBAL
    assert {r.smpp_status for r in (R.LIMIT_TPS, R.LIMIT_DELAY, R.LIMIT_DAY, R.LIMIT_WEEK, R.LIMIT_MONTH)} == {Status.RTHROTTLED}
    assert (R.BAD_SYSTEM_ID.smpp_status, R.BAD_PASSWORD.smpp_status, R.BAD_SYSTEM_TYPE.smpp_status) == (
        Status.RINVSYSID, Status.RINVPASWD, Status.RINVSYSTYP)
    assert {R.IP_BANNED.smpp_status, R.IP_NOT_ALLOWED.smpp_status, R.DISABLED.smpp_status} == {Status.RBINDFAIL}
    assert [r.prepaid_answer for r in (R.LIMIT_DAY, R.LIMIT_WEEK, R.LIMIT_MONTH, R.LIMIT_DELAY, R.NO_CREDIT,
                                       R.DISABLED, R.IP_NOT_ALLOWED, R.IP_BANNED)] == [
        "LIMIT_DAY", "LIMIT_WEEK", "LIMIT_MONTH", "LIMIT_DELAY", "LIMIT_EXCEEDED",
        "SERVICE_DISABLED", "INVALID_IP", "BAN_IP_TEMP"]
    assert R.BAD_PASSWORD.http_error.line == "ERROR - 001 --> Either Systemid or password is incorrect"
    assert [r.http_error.code for r in (R.EXPIRED, R.NO_CREDIT, R.NO_COVERAGE, R.LIMIT_DAY)] == [
        "003", "004", "006", "007"]


# --- admission: each refusal, nothing charged or counted ----------------------------------

@pytest.mark.parametrize("config, now, refusal", [
    ({"expires": "2026-03-09"}, T0, R.EXPIRED),
    ({"enabled": False}, T0, R.DISABLED),
    ({"coverage": [44, 359]}, T0, R.NO_COVERAGE),
    ({"limits": {"per_day": 0}}, T0, R.LIMIT_DAY),
    ({"limits": {"per_week": 0}}, T0, R.LIMIT_WEEK),
    ({"limits": {"per_month": 0}}, T0, R.LIMIT_MONTH),
    ({"credit": 0.05}, T0, R.NO_CREDIT),
])
def test_each_admit_refusal_charges_and_counts_nothing(config, now, refusal):
    a = acct(**{"credit": 10, **config})
    b = book(a)
    assert b.admit(a, "91", now) is refusal
    assert a.credit == to_micro(config.get("credit", 10))
    c = b.counters(a, now)
    assert (c["day"], c["week"], c["month"]) == (0, 0, 0)
    assert b.take_dirty() == []


def test_expires_is_inclusive_of_the_whole_day_in_the_book_timezone():
    a = acct(expires=date(2026, 3, 10))
    b = book(a)
    assert b.admit(a, "91", at("2026-03-10 23:59:59.9")) is None
    assert b.admit(a, "91", at("2026-03-11 00:00:00")) is R.EXPIRED


def test_delay_and_tps_refusals_leave_no_charge():
    a = acct(credit=10, limits={"min_delay_ms": 1000})
    b = book(a)
    assert b.admit(a, "91", T0) is None
    assert b.admit(a, "91", T0 + 0.5) is R.LIMIT_DELAY
    assert a.credit == to_micro(9.9) and b.counters(a, T0)["day"] == 1
    a2 = acct(system_id="fast", credit=10, limits={"tps": 1})
    b.add(a2)
    assert b.admit(a2, "91", T0) is None
    assert b.admit(a2, "91", T0 + 0.1) is R.LIMIT_TPS
    assert a2.credit == to_micro(9.9) and b.counters(a2, T0)["day"] == 1


def test_checks_run_in_the_documented_order():
    a = acct(credit=0, expires="2026-01-01", enabled=False, coverage=[44],
             limits={"per_day": 0, "per_week": 0, "per_month": 0, "min_delay_ms": 1000, "tps": 1})
    b = book(a)
    a.usage.last = T0 - 0.5  # a lookup half a second ago: min_delay not over
    a.usage.tokens = 0.0  # bucket empty
    a.usage.stamp = T0

    def evolve(acc, **changes):
        acc.settings = acc.settings.evolve(**changes)

    fixes = [
        (R.EXPIRED, lambda: evolve(a, expires=None)),
        (R.DISABLED, lambda: evolve(a, enabled=True)),
        (R.NO_COVERAGE, lambda: evolve(a, coverage=frozenset())),
        (R.LIMIT_DELAY, lambda: evolve(a, limits=Limits(0, 0, 0, 0, tps=1))),
        (R.LIMIT_TPS, lambda: evolve(a, limits=Limits(0, 0, 0))),
        (R.LIMIT_DAY, lambda: evolve(a, limits=Limits(None, 0, 0))),
        (R.LIMIT_WEEK, lambda: evolve(a, limits=Limits(None, None, 0))),
        (R.LIMIT_MONTH, lambda: evolve(a, limits=Limits())),
        (R.NO_CREDIT, lambda: b.top_up(a, MICRO, date(2026, 1, 1))),
        (None, None),
    ]
    for refusal, fix in fixes:
        assert b.admit(a, "91", T0) is refusal
        if fix:
            fix()
            b.replace(a)
            a.usage.tokens = 0.0  # replace() keeps the bucket; keep it empty until tps is lifted


# --- billing ---------------------------------------------------------------------------

def test_packages_are_consumed_oldest_first_and_a_charge_spans_two():
    # Config order is not age order: the book sorts by `bought`.
    a = acct(price=0.3, packages=[{"credit": 1, "bought": "2026-02-01", "label": "new"},
                                  {"credit": 0.5, "bought": date(2026, 1, 1), "label": "old"}])
    b = book(a)
    assert [p.label for p in a.packages] == ["old", "new"]
    assert b.admit(a, "91", T0) is None
    assert [p.credit for p in a.packages] == [200_000, MICRO]
    assert b.admit(a, "91", T0 + 1) is None  # 0.2 from "old", 0.1 from "new"
    assert [p.credit for p in a.packages] == [0, 900_000]
    assert b.admit(a, "91", T0 + 2) is None
    assert [p.credit for p in a.packages] == [0, 600_000]
    assert a.credit == 600_000


def test_refund_undoes_the_last_charge_exactly():
    a = acct(price=0.3, packages=[{"credit": 0.5, "bought": "2026-01-01"},
                                  {"credit": 1, "bought": "2026-02-01"}])
    b = book(a)
    b.admit(a, "91", T0)
    b.admit(a, "91", T0 + 1)
    b.refund(a, a.settings.price)
    assert [p.credit for p in a.packages] == [200_000, MICRO]
    b.refund(a, a.settings.price)
    assert [p.credit for p in a.packages] == [500_000, MICRO]
    b.refund(a, 7)  # more than ever drawn: lands in the newest package
    assert [p.credit for p in a.packages] == [500_000, MICRO + 7]
    assert b.admit(a, "91", T0 + 2) is None and a.packages[0].credit == 200_000


def test_top_up_and_unlimited_credit():
    a = acct(credit=0.1)
    b = book(a)
    assert b.admit(a, "91", T0) is None and b.admit(a, "91", T0 + 1) is R.NO_CREDIT
    p = b.top_up(a, 2 * MICRO, date(2026, 3, 1), "march")
    assert p.bought == date(2026, 3, 1) and a.credit == 2 * MICRO
    assert b.admit(a, "91", T0 + 2) is None and a.credit == 1_900_000
    demo = Account.from_config({"system_id": "demo", "password": "demo"})
    b.add(demo)
    assert demo.packages is None and demo.credit is None
    for i in range(100):
        assert b.admit(demo, "91", T0 + i) is None
    with pytest.raises(ValueError, match="unlimited"):
        b.top_up(demo, MICRO)


def test_low_credit_alert_fires_once_until_topped_up():
    alerts = []
    a = acct(credit=1, low_credit=0.5)
    b = book(a, on_low_credit=alerts.append)
    for i in range(5):
        b.admit(a, "91", T0 + i)
    assert alerts == []  # 0.5 left: not below
    for i in range(3):
        b.admit(a, "91", T0 + 10 + i)
    assert alerts == [a]
    b.top_up(a, 100_000)  # 0.3: still below, stays silent
    b.admit(a, "91", T0 + 20)
    assert alerts == [a]
    b.top_up(a, MICRO)
    for i in range(12):
        b.admit(a, "91", T0 + 30 + i)
    assert alerts == [a, a]


def test_refunds_around_the_threshold_do_not_repeat_the_alert():
    alerts = []
    a = acct(credit=0.5, low_credit=0.5)
    b = book(a, on_low_credit=alerts.append)
    for i in range(3):  # charged, then refunded (an HLR timeout): back to 0.5 each time
        assert b.admit(a, "91", T0 + i) is None
        b.refund(a, a.settings.price)
    assert alerts == [a] and a.credit == 500_000


def test_a_failing_alert_does_not_fail_the_lookup():
    def boom(acc):
        raise RuntimeError("mail server down")
    a = acct(credit=0.2, low_credit=1)
    b = book(a, on_low_credit=boom)
    assert b.admit(a, "91", T0) is None and a.credit == 100_000


def test_take_dirty_returns_changed_accounts_once():
    a, c = acct(credit=1), acct(system_id="calm", credit=1)
    b = book(a, c)
    assert b.take_dirty() == []
    b.admit(a, "91", T0)
    assert b.take_dirty() == [a]
    assert b.take_dirty() == []
    b.top_up(c, MICRO)
    assert b.take_dirty() == [c]


def test_admit_many_is_per_number_for_coverage_and_all_or_nothing_for_the_rest():
    a = acct(credit=0.2, coverage=[91, 44], limits={"min_delay_ms": 1000})
    b = book(a)
    batch = ["91", "359", "44", "44"]  # three covered numbers: 0.3
    assert b.admit_many(a, batch, T0) == [R.NO_CREDIT] * 4
    assert a.credit == 200_000 and b.counters(a, T0)["day"] == 0
    b.top_up(a, 200_000)
    assert b.admit_many(a, batch, T0) == [None, R.NO_COVERAGE, None, None]
    assert a.credit == 100_000 and b.counters(a, T0)["day"] == 3
    assert b.admit_many(a, ["91"], T0 + 0.5) == [R.LIMIT_DELAY]  # the batch was one request
    assert b.admit_many(a, ["359", "1"], T0 + 2) == [R.NO_COVERAGE] * 2
    assert b.admit_many(a, ["44"], T0 + 2) == [None] and a.credit == 0


# --- rate limits -------------------------------------------------------------------------

def test_token_bucket_burst_and_refill():
    a = acct(limits={"tps": 2})  # burst defaults to max(1, tps) = 2
    b = book(a)
    assert [b.admit(a, "91", T0) for _ in range(3)] == [None, None, R.LIMIT_TPS]
    assert b.admit(a, "91", T0 + 0.25) is R.LIMIT_TPS  # half a token
    assert b.admit(a, "91", T0 + 0.5) is None  # one token
    assert b.admit(a, "91", T0 + 0.5) is R.LIMIT_TPS
    # A long pause refills to the burst, never beyond.
    assert [b.admit(a, "91", T0 + 100) for _ in range(3)] == [None, None, R.LIMIT_TPS]


def test_token_bucket_explicit_burst_and_slow_rate():
    a = acct(limits={"tps": 10, "burst": 5})
    slow = acct(system_id="slow", limits={"tps": 0.5})  # burst 1
    b = book(a, slow)
    assert [b.admit(a, "91", T0) for _ in range(6)] == [None] * 5 + [R.LIMIT_TPS]
    assert [b.admit(a, "91", T0 + 0.1), b.admit(a, "91", T0 + 0.1)] == [None, R.LIMIT_TPS]
    assert [b.admit(slow, "91", T0), b.admit(slow, "91", T0 + 1.9), b.admit(slow, "91", T0 + 2)] == [
        None, R.LIMIT_TPS, None]


def test_min_delay_counts_from_the_last_accepted_lookup():
    a = acct(limits={"min_delay_ms": 500})
    b = book(a)
    assert b.admit(a, "91", T0) is None
    assert b.admit(a, "91", T0 + 0.4) is R.LIMIT_DELAY
    assert b.admit(a, "91", T0 + 0.499) is R.LIMIT_DELAY  # the refusal did not restart the wait
    assert b.admit(a, "91", T0 + 0.5) is None
    assert b.admit(a, "91", T0 - 60) is None  # a clock stepped back does not lock the account


# --- calendar windows in Europe/Sofia --------------------------------------------------------

def test_day_rolls_over_at_local_midnight_not_utc():
    a = acct(limits={"per_day": 1})
    b = book(a)
    assert b.admit(a, "91", at("2026-03-10 01:00")) is None  # 23:00 UTC on the 9th
    assert b.admit(a, "91", at("2026-03-10 02:30")) is R.LIMIT_DAY  # past UTC midnight: same day
    assert b.admit(a, "91", at("2026-03-10 23:59:59.999")) is R.LIMIT_DAY
    assert b.admit(a, "91", at("2026-03-11 00:00")) is None
    assert b.counters(a, at("2026-03-11 12:00"))["week"] == 2


def test_day_of_25_hours_when_dst_ends():
    a = acct(limits={"per_day": 1})
    b = book(a)
    assert b.admit(a, "91", at("2026-10-25 00:30")) is None
    later = at("2026-10-25 23:30")
    assert later - at("2026-10-25 00:30") == 24 * 3600  # 23:30 is 24 h later on this day
    assert b.admit(a, "91", later) is R.LIMIT_DAY
    assert b.admit(a, "91", at("2026-10-26 00:00")) is None


def test_week_rolls_over_on_monday():
    assert date(2026, 3, 15).weekday() == 6  # a Sunday
    a = acct(limits={"per_week": 2})
    b = book(a)
    assert b.admit(a, "91", at("2026-03-09 00:00")) is None  # Monday
    assert b.admit(a, "91", at("2026-03-12 10:00")) is None
    assert b.admit(a, "91", at("2026-03-15 23:59:59")) is R.LIMIT_WEEK
    assert b.admit(a, "91", at("2026-03-16 00:00")) is None
    c = b.counters(a, at("2026-03-16 00:00"))
    assert (c["day"], c["week"], c["month"]) == (1, 1, 3)


def test_month_rolls_over_on_the_first_across_a_dst_change():
    a = acct(limits={"per_month": 1})
    b = book(a)
    assert b.admit(a, "91", at("2026-03-01 00:00")) is None  # UTC+2
    assert b.admit(a, "91", at("2026-03-31 23:59:59")) is R.LIMIT_MONTH  # UTC+3 since the 29th
    assert b.admit(a, "91", at("2026-04-01 00:00")) is None
    assert b.admit(a, "91", at("2026-04-30 12:00")) is R.LIMIT_MONTH


def test_windows_are_per_account():
    a, c = acct(limits={"per_day": 1}), acct(system_id="other", limits={"per_day": 1})
    b = book(a, c)
    assert b.admit(a, "91", T0) is None
    assert b.admit(c, "91", T0) is None
    assert b.admit(a, "91", T0 + 1) is R.LIMIT_DAY


# --- binding -------------------------------------------------------------------------------

def test_authenticate_refusals_in_order():
    a = acct(allowed_ips=["10.0.0.0/24"], expires="2026-01-01", enabled=False)
    b = book(a)
    ok = ("acme", "s3cret", "HLR", "10.0.0.7", T0)
    assert b.authenticate("nobody", "s3cret", "HLR", "10.0.0.7", T0) == (R.BAD_SYSTEM_ID, None)
    assert b.authenticate("acme", "wrong", "HLR", "10.0.0.7", T0) == (R.BAD_PASSWORD, None)
    assert b.authenticate("acme", "s3cret", "hlr", "10.0.0.7", T0) == (R.BAD_SYSTEM_TYPE, None)  # exact
    assert b.authenticate("acme", "s3cret", "HLR", "10.0.1.7", T0) == (R.IP_NOT_ALLOWED, None)
    assert b.authenticate(*ok) == (R.DISABLED, None)
    b.disable("acme", enabled=True)
    assert b.authenticate(*ok) == (R.EXPIRED, None)
    b.replace(dataclasses.replace(a, settings=a.settings.evolve(expires=None)))
    assert b.authenticate(*ok) == (None, a)


def test_ban_after_n_failures_and_its_expiry():
    a = acct()
    b = book(a, ban_after=3, ban_window=60, ban_time=300)
    ip = "192.0.2.9"
    assert b.authenticate("acme", "x", "HLR", ip, T0)[0] is R.BAD_PASSWORD
    assert b.authenticate("nobody", "x", "HLR", ip, T0 + 1)[0] is R.BAD_SYSTEM_ID
    assert b.check_ip(ip, T0 + 2) is None
    assert b.authenticate("acme", "x", "HLR", ip, T0 + 2)[0] is R.BAD_PASSWORD  # third: banned
    assert b.check_ip(ip, T0 + 3) is R.IP_BANNED
    assert b.authenticate("acme", "s3cret", "HLR", ip, T0 + 3) == (R.IP_BANNED, None)
    assert b.check_ip("192.0.2.10", T0 + 3) is None  # only that address
    assert b.check_ip(f"::ffff:{ip}", T0 + 3) is R.IP_BANNED  # same peer seen on a dual-stack socket
    assert b.authenticate("acme", "s3cret", "HLR", ip, T0 + 2 + 300) == (None, a)


def test_failures_outside_the_window_and_success_reset_the_count():
    a = acct(system_type="VMS")
    b = book(a, ban_after=3, ban_window=60)
    ip = "2001:db8::1"
    b.authenticate("acme", "x", "VMS", ip, T0)
    b.authenticate("acme", "x", "VMS", ip, T0 + 1)
    b.authenticate("acme", "x", "VMS", ip, T0 + 70)  # the window restarted: 1 failure
    b.authenticate("acme", "x", "VMS", ip, T0 + 71)
    assert b.check_ip(ip, T0 + 72) is None
    assert b.authenticate("acme", "s3cret", "VMS", ip, T0 + 72) == (None, a)  # success clears
    b.authenticate("acme", "x", "VMS", ip, T0 + 73)
    b.authenticate("acme", "x", "VMS", ip, T0 + 74)
    assert b.check_ip(ip, T0 + 75) is None
    for _ in range(5):  # wrong system_type is not guessing a secret: never bans
        assert b.authenticate("acme", "s3cret", "HLR", ip, T0 + 76)[0] is R.BAD_SYSTEM_TYPE
    assert b.check_ip(ip, T0 + 77) is None


@pytest.mark.parametrize("ip, allowed", [
    ("10.1.2.3", True), ("10.1.255.255", True), ("10.2.0.1", False), ("127.0.0.1", True),
    ("::ffff:10.1.2.3", True), ("2001:db8:1:2::99", True), ("2001:db8:1:3::1", False),
    ("::1", False), ("not-an-ip", False), ("", False),
])
def test_cidr_allowlists_v4_and_v6(ip, allowed):
    a = acct(allowed_ips=["10.1.0.0/16", "127.0.0.1", "2001:db8:1:2::/64"])
    b = book(a)
    expected = (None, a) if allowed else (R.IP_NOT_ALLOWED, None)
    assert b.authenticate("acme", "s3cret", "HLR", ip, T0) == expected


def test_removed_account_held_by_a_session_is_disabled():
    a = acct()
    b = book(a)
    b.remove("acme")
    assert b.get("acme") is None and b.admit(a, "91", T0) is R.DISABLED


def test_replace_updates_in_place_and_keeps_credit_and_counters():
    a = acct(credit=10, limits={"per_day": 5})
    b = book(a)
    b.admit(a, "91", T0)
    live = b.replace(acct(credit=10, price=1, limits={"per_day": 1}))
    assert live is a and a.settings.price == MICRO and a.credit == to_micro(9.9)
    assert b.admit(a, "91", T0 + 1) is R.LIMIT_DAY
    b.replace(acct(credit=3), with_packages=True)
    assert a.credit == 3 * MICRO and b.take_dirty() == [a]


# --- configuration ---------------------------------------------------------------------------

def test_from_config_full_example_and_record_round_trip():
    a = Account.from_config({
        "system_id": "acme", "password": "s3cret", "system_type": "HLR", "credit": 100.0,
        "price": 0.1, "expires": date(2027, 12, 31), "coverage": [91, 44],
        "limits": {"per_day": 10000, "per_week": 50000, "per_month": 200000, "min_delay_ms": 0, "tps": 100},
        "allowed_ips": ["127.0.0.1/32"], "max_tx": 10, "low_credit": 5})
    assert a.credit == 100 * MICRO and a.settings.price == 100_000 and a.settings.coverage == {"91", "44"}
    assert a.settings.limits.depth == 100 and a.settings.low_credit == 5 * MICRO
    b = book(a)
    b.admit(a, "44", T0)
    rec = a.to_record()
    # The record keeps a salted hash, never the password; the account it gives back knows
    # the hash only.
    assert "password" not in rec and rec["password_hash"].startswith("scrypt$")
    assert "s3cret" not in json.dumps(rec)
    back = Account.from_record(json.loads(json.dumps(rec)))
    assert back == dataclasses.replace(a, settings=a.settings.evolve(password=None)) and back.packages[0].size == 100 * MICRO
    assert verify_password("s3cret", back.settings.password_hash) and not verify_password("s3cre7", back.settings.password_hash)
    demo = Account.from_config({"system_id": "demo", "password": "demo"})
    assert (demo.settings.system_type, demo.settings.price, demo.packages, demo.settings.coverage, demo.settings.max_tx) == (
        "HLR", 100_000, None, frozenset(), 10)
    assert Account.from_record(demo.to_record()) == dataclasses.replace(demo, settings=demo.settings.evolve(password=None))


def test_from_micro_is_the_exact_decimal_text():
    from decimal import Decimal
    for m in (0, 1, 10, 100_000, 999_999, MICRO, 1_500_000, 1_000_001, 10**15, 10**15 + 7, 123_456_789, -1, -1_500_000):
        assert from_micro(m) == format(Decimal(m).scaleb(-6).normalize(), "f"), m
    assert from_micro(1_500_000) == "1.5" and from_micro(-1_500_000) == "-1.5" and from_micro(1_000_001) == "1.000001"


def test_record_text_is_the_record_as_json_as_credit_and_settings_change():
    """The store's text of an account is its record's JSON, byte for byte, however its
    credit and settings changed since the last one."""
    def same(a):
        assert a.record_text() == json.dumps(a.to_record(), default=str)
        assert json.loads(a.record_text()) == a.to_record()
    prepaid = acct(credit=100.0, coverage=[44], limits={"per_day": 10})
    unlimited = acct(system_id="free")
    b = book(prepaid, unlimited)
    for a in (prepaid, unlimited):
        same(a)
        assert b.admit(a, "44", T0) is None
        same(a)
    b.top_up(prepaid, 5 * MICRO, date(2026, 3, 1), "inv-1")
    same(prepaid)
    b.top_up(prepaid, 1, None, 'a "quoted" label, é')
    prepaid.packages[0].credit = 0
    same(prepaid)
    b.refund(prepaid, 300_000)
    same(prepaid)
    b.disable("acme")
    assert json.loads(prepaid.record_text())["enabled"] is False
    same(prepaid)
    b.replace(acct(credit=7, price=0.2), with_packages=True)
    assert json.loads(prepaid.record_text())["price"] == "0.2"
    same(prepaid)
    assert prepaid.system_id == prepaid.settings.system_id == "acme"  # kept with the settings it came from


@pytest.mark.parametrize("config, message", [
    ({"password": "x"}, "system_id"),
    ({"system_id": "a" * 16, "password": "x"}, "system_id"),
    ({"system_id": "acme"}, "account 'acme': password"),
    ({"system_id": "acme", "password": "123456789"}, "account 'acme': password"),
    ({"system_id": "acme", "password": "x", "credit": 1, "packages": []}, "not both"),
    ({"system_id": "acme", "password": "x", "credit": "lots"}, "account 'acme': credit"),
    ({"system_id": "acme", "password": "x", "credit": -1}, "account 'acme': credit"),
    ({"system_id": "acme", "password": "x", "price": 0.0000001}, "account 'acme': price"),
    ({"system_id": "acme", "password": "x", "expires": "31/12/2027"}, "account 'acme': expires"),
    ({"system_id": "acme", "password": "x", "coverage": ["9a"]}, "account 'acme': coverage"),
    ({"system_id": "acme", "password": "x", "coverage": [1234]}, "account 'acme': coverage"),
    ({"system_id": "acme", "password": "x", "allowed_ips": ["10.0.0.300/8"]}, "account 'acme': allowed_ips"),
    ({"system_id": "acme", "password": "x", "limits": {"per_dya": 1}}, "account 'acme': limits: unknown key(s) per_dya"),
    ({"system_id": "acme", "password": "x", "limits": {"tps": 0}}, "account 'acme': limits.tps"),
    ({"system_id": "acme", "password": "x", "limits": {"per_day": -1}}, "account 'acme': limits.per_day"),
    ({"system_id": "acme", "password": "x", "limits": {"per_day": 1.5}}, "account 'acme': limits.per_day"),
    ({"system_id": "acme", "password": "x", "limits": {"burst": 3}}, "limits.burst"),
    ({"system_id": "acme", "password": "x", "max_tx": "ten"}, "account 'acme': max_tx"),
    ({"system_id": "acme", "password": "x", "data_coding": 256}, "account 'acme': data_coding"),
    ({"system_id": "acme", "password": "x", "enabled": "yes"}, "account 'acme': enabled"),
    ({"system_id": "acme", "password": "x", "packages": [{"credit": 1, "bought": "soon"}]},
     "account 'acme': packages[0].bought"),
    ({"system_id": "acme", "password": "x", "packages": [{"bought": "2026-01-01"}]}, "packages[0]"),
    ({"system_id": 12345, "password": "x"}, "account 12345: system_id"),
    ({"system_id": "acme", "password": 1234}, "account 'acme': password"),
    ({"system_id": "acme", "password": "x", "crédit": 5}, "account 'acme': unknown key(s) crédit"),
])
def test_from_config_errors_name_the_account_and_key(config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Account.from_config(config)


def test_book_refuses_duplicate_ids():
    with pytest.raises(ValueError, match="already exists"):
        book(acct(), acct())


def test_receipt_profiles_and_the_standard_profiles_former_name():
    assert Account.from_config({"system_id": "a", "password": "p"}).settings.receipt == {"profile": "standard"}
    ext = Account.from_config({"system_id": "a", "password": "p", "receipt": "extended"})
    assert ext.settings.receipt["profile"] == "extended" and Account.from_record(ext.to_record()).settings.receipt == ext.settings.receipt
    # "seed", its name in files and stores written before: still the standard profile.
    old = Account.from_config({"system_id": "a", "password": "p", "receipt": "seed"})
    assert old.settings.receipt["profile"] == "standard"
    stored = dict(old.to_record(), receipt={"profile": "seed"})   # as an older store holds it
    assert Account.from_record(stored).settings.receipt["profile"] == "standard"
    with pytest.raises(ValueError, match="standard, tlv"):
        Account.from_config({"system_id": "a", "password": "p", "receipt": "fancy"})
