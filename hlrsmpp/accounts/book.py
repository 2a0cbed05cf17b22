"""The account book: every account of this process, what each has used, who may bind.

Pure and synchronous (no I/O, no asyncio). An `Account` is its settings (immutable,
settings.py), its credit (`packages`) and its `Usage`; the book alone changes the last two.
`AccountBook.admit` runs once per submit_sm, so its path touches only precomputed floats
and ints: the calendar windows (day, ISO week, month in the book's timezone) are epoch
boundaries recomputed only when `now` leaves the current day. Credit is kept in integer
micro-credits so 100,000 charges of 0.1 stay exact.
"""
from __future__ import annotations

import bisect
import hmac
import ipaddress
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Callable, Iterable, Iterator

from .allowlist import ip_allowed, parse_subject, peer_address
from .calendar import Calendar
from .passwords import Verified, hash_password
from .refusal import Refusal
from .settings import (MICRO, AccountSettings, Limits, PACKAGE_TABLE, dump_keys, from_micro,
                       parse_balance)

__all__ = ["MICRO", "Account", "AccountBook", "AccountSettings", "Limits", "Package", "Reservation",
           "Usage", "from_micro", "merge_settings"]

log = logging.getLogger(__name__)

INF = math.inf
#: json.dumps(..., default=str) without building an encoder per call
_to_json = json.JSONEncoder(default=str).encode


@dataclass(slots=True)
class Package:
    """A prepaid credit package: consumed oldest `bought` first."""
    credit: int  # micro-credits remaining
    bought: date | None = None  # None: opening balance, older than any dated package
    label: str = ""
    size: int = -1  # micro-credits bought; refunds refill up to it (-1: credit)
    # ((size, bought, label), the record's JSON after its credit): record_text's
    _rest: tuple[tuple[int, date | None, str], str] | None = field(default=None, init=False, repr=False,
                                                                   compare=False)

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = self.credit

    @property
    def age_key(self) -> tuple[bool, date]:
        return (self.bought is not None, self.bought or date.min)

    def to_record(self) -> dict[str, Any]:
        return dump_keys(self, PACKAGE_TABLE)

    def record_text(self) -> str:
        """``json.dumps(self.to_record(), default=str)``: credit, its first key, changes with
        every charge; what follows it is dumped again only when it changed."""
        rest = (self.size, self.bought, self.label)
        held = self._rest
        if held is None or held[0] != rest:
            record = self.to_record()
            del record["credit"]
            held = self._rest = (rest, _to_json(record)[1:])  # '}' or ', "size": ...}'
        tail = held[1]
        return f'{{"credit": "{from_micro(self.credit)}"{", " if len(tail) > 1 else ""}{tail}'


def _age(p: Package) -> tuple[bool, date]:
    return (p.bought is not None, p.bought or date.min)


@dataclass(slots=True, eq=False)
class Usage:
    """What an account used, and the settings its admission reads, as plain numbers.

    The book's alone: derived from the settings when they are set (`AccountBook.replace`),
    changed by admission, refunds, top-ups and leases. Not persisted: the day/week/month
    counts are restored from the history at start-up (restore_counts); the rest restarts
    empty."""
    # From the settings, for the hot path.
    expires_at: float = INF
    enabled: bool = True
    coverage: frozenset[str] = frozenset()
    price: int = 0
    delay: float = 0.0  # min_delay, seconds
    tps: float = 0.0
    depth: float = 0.0
    need: float = 1.0  # a token, less rounding
    cap_day: float = INF
    cap_week: float = INF
    cap_month: float = INF
    # Credit: the sum of the packages held here, the oldest non-empty one.
    credit: int = 0
    head: int = 0
    low_alerted: bool = False
    # Auto-recharge: the threshold a charge must cross (-1: none here, no test passes), and
    # the packages added in the month `recharge_month` ("YYYY-MM").
    recharge_below: int = -1
    recharges: int = 0
    recharge_month: str = ""
    # Rate: the last lookup, the token bucket.
    last: float = -INF
    tokens: float = 0.0
    stamp: float = -INF
    # The windows counted in (epoch starts) and their counts.
    day: float = -INF
    week: float = -INF
    month: float = -INF
    n_day: int = 0
    n_week: int = 0
    n_month: int = 0
    # Shared deployments (Redis): credit of this account held outside this process (the
    # free pool and other processes' leases); 0 with the embedded store.
    elsewhere: int = 0


@dataclass(slots=True)
class Account:
    """One account: its settings (immutable, swapped whole by AccountBook.replace), its
    credit (None: unlimited) and its usage, both changed by the book only."""
    settings: AccountSettings
    packages: list[Package] | None = None
    usage: Usage = field(default_factory=Usage, repr=False, compare=False)
    # (settings, their record as JSON): record_text's, dumped again only with new settings
    _settings_text: tuple[AccountSettings, str] | None = field(default=None, init=False, repr=False,
                                                               compare=False)
    # settings.system_id, read a few times per lookup: new settings never rename an account
    system_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.system_id = self.settings.system_id

    @property
    def credit(self) -> int | None:
        return None if self.packages is None else sum(p.credit for p in self.packages) + self.usage.elsewhere

    @classmethod
    def from_config(cls, d: Any) -> Account:
        """Build from a YAML or API account mapping; ValueError names account and key."""
        settings = AccountSettings.from_config(d)
        balance = parse_balance(d, f"account {settings.system_id!r}")
        if settings.auto_recharge is not None and balance is None:
            raise ValueError(f"account {settings.system_id!r}: auto_recharge needs prepaid credit "
                             "(credit or packages); this account's is unlimited")
        return cls(settings, None if balance is None else [Package(**p) for p in balance])

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Account:
        return cls.from_config(r)

    def to_record(self) -> dict[str, Any]:
        """The durable part (settings + packages) as a JSON-able dict; from_record inverts it.

        Amounts are exact decimal strings, so the record is also valid YAML config."""
        if self.settings.password_hash is None:  # made on a worker thread at start-up; else now, once
            assert self.settings.password is not None  # one of the two, always
            self.settings = self.settings.evolve(password_hash=hash_password(self.settings.password))
        r = self.settings.to_record()
        if self.packages is not None:
            r["packages"] = [p.to_record() for p in self.packages]
        return r

    def record_text(self) -> str:
        """``json.dumps(self.to_record(), default=str)``, the same text, for the store: each
        commit writes the record of every account it charged, and only the packages change
        between two; the settings (immutable) are dumped once."""
        held = self._settings_text
        if held is None or held[0] is not self.settings:
            record = self.to_record()  # hashes the password first, when it still has to be
            record.pop("packages", None)
            held = self._settings_text = (self.settings, _to_json(record))
        if self.packages is None:
            return held[1]
        packages = ", ".join([p.record_text() for p in self.packages])
        return f'{held[1][:-1]}, "packages": [{packages}]}}'  # the settings' keys, then packages: to_record's order


@dataclass(slots=True)
class Reservation:
    """Lookups admitted and charged by AccountBook.reserve, until committed or rolled back."""
    account: Account
    n: int
    cost: int
    last: float   # the account's last lookup before
    token: bool   # a tps token was taken
    day: float    # the windows the lookups were counted in
    week: float
    month: float


class AccountBook:
    """Every account of this process, what each has used (credit, counters, tokens) and
    the IP bans. The book alone changes an account's usage and credit; new settings come in
    whole through replace()."""

    def __init__(self, accounts: Iterable[Account] = (), tz: str = "UTC", ban_after: int = 5,
                 ban_window: float = 60.0, ban_time: float = 300.0,
                 on_low_credit: Callable[[Account], None] | None = None,
                 on_auto_recharge: Callable[[Account, Package, float], None] | None = None):
        self.calendar = Calendar(tz)
        self.ban_after, self.ban_window, self.ban_time = ban_after, ban_window, ban_time
        self.on_low_credit = on_low_credit
        # Told of each package auto-recharge added here (acc, package, when), to make it
        # durable with the charge that crossed; None: this book adds none (a shared store
        # decides them, in its commit).
        self.on_auto_recharge = on_auto_recharge
        # Called (refusal path only) when a credit-limited account lacks credit here: a shared
        # store leases more to this process. None with the embedded store.
        self.on_no_credit: Callable[[Account], None] | None = None
        self._accounts: dict[str, Account] = {}
        self._dirty: dict[str, Account] = {}
        self._failures: dict[str, tuple[float, int]] = {}  # ip -> (first failure, count)
        self.verified = Verified()  # passwords that passed the full check in this process
        self._banned: dict[str, float] = {}  # ip (IPv6: its /64) -> banned until
        # Called with (ip key, until) when an IP is banned: the server makes it durable,
        # so a restart does not lift it.
        self.on_ban: Callable[[str, float], None] | None = None
        self._day_start = self._day_end = self._week_start = self._month_start = 0.0
        self._roll(time.time())
        for a in accounts:
            self.add(a)

    # --- the book -------------------------------------------------------------------

    def get(self, system_id: str) -> Account | None:
        return self._accounts.get(system_id)

    def __iter__(self) -> Iterator[Account]:
        return iter(list(self._accounts.values()))

    def __len__(self) -> int:
        return len(self._accounts)

    def add(self, acc: Account) -> Account:
        if acc.system_id in self._accounts:
            raise ValueError(f"account {acc.system_id!r} already exists")
        self._derive(acc)
        acc.usage.tokens, acc.usage.low_alerted = acc.usage.depth, False
        self._accounts[acc.system_id] = acc
        return acc

    def replace(self, new: Account, with_packages: bool = False) -> Account:
        """Update the live account in place (sessions keep their reference), keeping its
        counters and bucket; adds it when unknown.

        The live credit is kept unless `with_packages`: re-reading the YAML must not undo
        what was spent since the config was written."""
        live = self._accounts.get(new.system_id)
        if live is None:
            return self.add(new)
        if live is not new:
            live.settings = new.settings
            if with_packages:
                live.packages = new.packages
        self._dirty[live.system_id] = live  # the record (config + packages) changed
        had_tps = live.usage.tps
        self._derive(live)
        live.usage.tokens = min(live.usage.tokens, live.usage.depth) if had_tps else live.usage.depth
        self._rearm_alert(live)
        return live

    def remove(self, system_id: str) -> Account | None:
        acc = self._accounts.pop(system_id, None)
        if acc is not None:  # a session still holding it gets DISABLED, not free lookups
            acc.settings = acc.settings.evolve(enabled=False)
            acc.usage.enabled = False
        return acc

    def disable(self, system_id: str, enabled: bool = False) -> Account:
        acc = self._accounts[system_id]
        acc.settings = acc.settings.evolve(enabled=enabled)
        acc.usage.enabled = enabled
        self._dirty[system_id] = acc
        return acc

    def set_password_hash(self, acc: Account, encoded: str) -> None:
        """The account's password, hashed (at start-up, on a worker thread's answer)."""
        acc.settings = acc.settings.evolve(password_hash=encoded)

    def _derive(self, acc: Account) -> None:
        s, u = acc.settings, acc.usage
        u.expires_at = INF if s.expires is None else self.calendar.midnight(s.expires + timedelta(days=1))
        u.enabled, u.coverage, u.price = s.enabled, s.coverage, s.price
        if acc.packages is not None:
            acc.packages.sort(key=_age)  # stable: config order breaks ties
        self._rehead(acc)
        lim = s.limits
        u.delay = lim.min_delay_ms / 1000.0
        u.tps = lim.tps or 0.0
        u.depth = lim.depth if lim.tps else 0.0
        # Epoch floats resolve ~0.24 µs today, so `now - stamp` may fall a hair short of the
        # true gap; forgive 1 µs of refill so a client sending exactly at `tps` is not refused.
        u.need = 1.0 - min(u.tps * 1e-6, 1e-3)
        u.cap_day = INF if lim.per_day is None else lim.per_day
        u.cap_week = INF if lim.per_week is None else lim.per_week
        u.cap_month = INF if lim.per_month is None else lim.per_month
        ar = s.auto_recharge
        u.recharge_below = -1 if ar is None or self.on_auto_recharge is None or acc.packages is None else ar.below

    @staticmethod
    def _rehead(acc: Account) -> None:
        pk = acc.packages or []
        acc.usage.credit = sum(p.credit for p in pk)
        acc.usage.head = next((i for i, p in enumerate(pk) if p.credit > 0), len(pk))

    def held(self, acc: Account) -> int:
        """The credit this process holds for `acc` (on a shared store: its lease)."""
        return acc.usage.credit

    def set_elsewhere(self, acc: Account, credit: int) -> None:
        """Shared deployments: the credit of `acc` held outside this process."""
        acc.usage.elsewhere = max(0, credit)

    # --- calendar ---------------------------------------------------------------------

    def _roll(self, now: float) -> None:
        """Copy the current day/week/month starts to plain floats; runs once per day, not
        per lookup."""
        d = self.calendar.day(now)
        self._day_start, self._day_end, self._week_start, self._month_start = (
            d.start, d.end, d.week_start, d.month_start)

    def _count_period(self, acc: Account) -> None:
        # Called when the account's counters belong to another day than the book's.
        if acc.usage.day != self._day_start:
            acc.usage.day, acc.usage.n_day = self._day_start, 0
        if acc.usage.week != self._week_start:
            acc.usage.week, acc.usage.n_week = self._week_start, 0
        if acc.usage.month != self._month_start:
            acc.usage.month, acc.usage.n_month = self._month_start, 0

    def periods(self, now: float) -> tuple[float, float, float]:
        """The starts of the current day, week and month (epoch seconds, in the book's
        timezone): the windows of the per_day, per_week and per_month limits."""
        if now >= self._day_end or now < self._day_start:
            self._roll(now)
        return self._day_start, self._week_start, self._month_start

    def has_limits(self) -> bool:
        """Whether an account has a day, week or month limit."""
        return any(min(a.usage.cap_day, a.usage.cap_week, a.usage.cap_month) < INF for a in self._accounts.values())

    def restore_counts(self, counts: dict[str, tuple[int, int, int]], now: float) -> None:
        """Each account's lookups of the current day, week and month, as the history holds
        them: a restart does not give an account its limits afresh."""
        day, week, month = self.periods(now)
        for sid, (n_day, n_week, n_month) in counts.items():
            acc = self._accounts.get(sid)
            if acc is not None:
                acc.usage.day, acc.usage.week, acc.usage.month = day, week, month
                acc.usage.n_day, acc.usage.n_week, acc.usage.n_month = n_day, n_week, n_month

    def counters(self, acc: Account, now: float | None = None) -> dict[str, Any]:
        """For the admin API: this day/week/month's accepted lookups and the credit."""
        self.periods(time.time() if now is None else now)
        self._count_period(acc)
        return {"day": acc.usage.n_day, "week": acc.usage.n_week, "month": acc.usage.n_month,
                "credit": acc.credit, "tokens": acc.usage.tokens if acc.usage.tps else None}

    # --- admission and billing (the hot path) ----------------------------------------

    def admit(self, acc: Account, cc: str | None, now: float, price: int | None = None,
              n: int = 1) -> Refusal | None:
        """Admit one lookup to country calling code `cc` at epoch `now`, charging it
        (`price` micro-credits, else the account's price: a text message its segments').

        ``n`` lookups as ONE request (a batch, its coverage decided by the caller: `cc`
        None): one min_delay gap and one tps token; the windows and the credit must hold
        all of them. A refused request charges and counts nothing."""
        if now >= self._day_end or now < self._day_start:
            self._roll(now)
        u = acc.usage
        if now >= u.expires_at:
            return Refusal.EXPIRED
        if not u.enabled:
            return Refusal.DISABLED
        if u.coverage and cc is not None and cc not in u.coverage:
            return Refusal.NO_COVERAGE
        if u.delay:
            since = now - u.last
            if 0.0 <= since < u.delay:  # a clock stepped back does not lock the account
                return Refusal.LIMIT_DELAY
        tps = u.tps
        if tps:
            tokens = u.tokens
            if now > u.stamp:
                tokens += (now - u.stamp) * tps
                if tokens > u.depth:
                    tokens = u.depth
                u.tokens, u.stamp = tokens, now
            if tokens < u.need:
                return Refusal.LIMIT_TPS
        if u.day != self._day_start:
            self._count_period(acc)
        if u.n_day + n > u.cap_day:
            return Refusal.LIMIT_DAY
        if u.n_week + n > u.cap_week:
            return Refusal.LIMIT_WEEK
        if u.n_month + n > u.cap_month:
            return Refusal.LIMIT_MONTH
        cost = (u.price if price is None else price) * n
        if acc.packages is not None and u.credit < cost:
            return self._no_credit(acc)
        # Accepted: from here on nothing refuses.
        if tps:
            u.tokens -= 1.0
        u.last = now
        u.n_day += n
        u.n_week += n
        u.n_month += n
        if cost and acc.packages is not None:
            self._charge(acc, cost)
        return None

    def admit_many(self, acc: Account, ccs: list[str], now: float) -> list[Refusal | None]:
        """Admit a batch (HTTP lookup of up to 100 numbers, submit_multi) as ONE request.

        Per number only for coverage: uncovered numbers get NO_COVERAGE and cost nothing.
        The covered rest is all-or-nothing: one min_delay gap and one tps token for the
        request, every period window and the credit must hold all of them, else each gets
        the batch's refusal. The caller answers a single error when all refusals agree."""
        coverage = acc.usage.coverage
        covered = [not coverage or cc in coverage for cc in ccs]
        n = sum(covered)
        if n == 0:
            return [Refusal.NO_COVERAGE] * len(ccs)
        refusal = self.admit(acc, None, now, None, n)
        if refusal is not None:
            return [refusal] * len(ccs)
        return [None if c else Refusal.NO_COVERAGE for c in covered]

    def reserve(self, acc: Account, cc: str, now: float) -> Refusal | Reservation:
        """Admit and charge one lookup as admit() does, undoably: commit() keeps it,
        rollback() gives back what it took (its token, its place in the windows and the
        min_delay, its charge), as when a later check refuses the request."""
        u = acc.usage
        if u.coverage and cc not in u.coverage:
            return Refusal.NO_COVERAGE
        last, token = u.last, bool(u.tps)   # what admit changes, to undo it
        refusal = self.admit(acc, None, now)
        if refusal is not None:
            return refusal
        return Reservation(acc, 1, u.price if acc.packages is not None else 0, last, token,
                           u.day, u.week, u.month)

    def commit(self, hold: Reservation) -> None:
        """The reserved lookups stand (they are already charged and counted)."""

    def rollback(self, hold: Reservation) -> None:
        """Undo a reservation; call it before the account admits anything else."""
        acc = hold.account
        u = acc.usage
        if hold.token:
            u.tokens = min(u.depth, u.tokens + 1.0)
        u.last = hold.last
        if (u.day, u.week, u.month) == (hold.day, hold.week, hold.month):
            u.n_day -= hold.n
            u.n_week -= hold.n
            u.n_month -= hold.n
        if hold.cost:
            self.refund(acc, hold.cost)

    def _charge(self, acc: Account, amount: int) -> None:
        # Oldest package first, as a prepaid customer expects; one charge may empty a package and go on.
        u = acc.usage
        u.credit -= amount
        pk, i, left = acc.packages, u.head, amount
        assert pk is not None
        while left:
            p = pk[i]
            if p.credit > left:
                p.credit -= left
                break
            left -= p.credit
            p.credit = 0
            i += 1
        u.head = i
        self._dirty[acc.system_id] = acc
        # A crossing: credit was at or above `below` before this charge, and is below it now.
        if u.credit < u.recharge_below and u.credit + amount >= u.recharge_below:
            self._auto_recharge(acc)
        low = acc.settings.low_credit
        if u.credit < low and not u.low_alerted and u.credit + u.elsewhere < low:
            u.low_alerted = True
            if self.on_low_credit is not None:
                try:
                    self.on_low_credit(acc)
                except Exception:  # the lookup is already charged; an alert bug must not fail it
                    log.exception("low-credit alert for %s failed", acc.system_id)

    def _auto_recharge(self, acc: Account) -> None:
        """Credit just fell below the account's auto_recharge `below`: add a package of
        `add`, unless `max_per_month` were added this month. Not on the hot path: once a
        crossing. Falling further, or a refund, is no new crossing; credit added (this
        package, a top-up) that lifts it back to `below` or more makes the next fall one."""
        ar = acc.settings.auto_recharge
        if ar is None or self.on_auto_recharge is None:
            return
        at = time.time()
        day = self.calendar.day(at)
        month = self.month(at)
        u = acc.usage
        if u.recharge_month != month:
            u.recharge_month, u.recharges = month, 0
        if u.recharges >= ar.max_per_month:
            return
        u.recharges += 1
        p = self.add_package(acc, Package(ar.add, day.date, "auto_recharge"))
        try:
            self.on_auto_recharge(acc, p, at)
        except Exception:  # the package is added and counted; a bug in telling must not fail the lookup
            log.exception("auto-recharge of %s: recording failed", acc.system_id)

    def month(self, t: float) -> str:
        """The calendar month ("YYYY-MM", in the book's timezone) holding instant `t`."""
        return self.calendar.keys(t)[2][1:]

    def recharges(self, acc: Account, now: float | None = None) -> tuple[str, int]:
        """("YYYY-MM", packages auto-recharge added to `acc` in that month): the month of `now`."""
        month = self.month(time.time() if now is None else now)
        u = acc.usage
        return month, u.recharges if u.recharge_month == month else 0

    def count_recharges(self, acc: Account, month: str, n: int) -> None:
        """The packages auto-recharge added to `acc` in `month` ("YYYY-MM"), as the store
        counts them (at start-up; a shared store's, as they happen). A month's count only
        grows: a read older than the last one does not lower it."""
        u = acc.usage
        if month > u.recharge_month:
            u.recharge_month, u.recharges = month, n
        elif month == u.recharge_month:
            u.recharges = max(u.recharges, n)

    def set_auto_recharge(self, hook: Callable[[Account, Package, float], None] | None) -> None:
        """Who records this book's auto-recharges (None: this book adds none)."""
        self.on_auto_recharge = hook
        for acc in self._accounts.values():
            self._derive(acc)

    def refund(self, acc: Account, amount: int) -> None:
        """Give back `amount` micro-credits (a lookup that failed internally).

        Undoes charges in reverse: refills the most recently drawn package up to its size,
        then the one before, so a refund right after a charge restores the exact packages.
        Whatever exceeds what was ever drawn goes to the newest package. Window counters
        are not rolled back: the attempt happened."""
        if amount < 0:
            raise ValueError("refund: negative amount")
        if acc.packages is None or not amount:
            return
        pk = acc.packages
        if not pk:
            pk.append(Package(0, self._today(), "refund", 0))
        i = min(acc.usage.head, len(pk) - 1)
        left = amount
        while left and i >= 0:
            room = pk[i].size - pk[i].credit
            if room > 0:
                take = min(room, left)
                pk[i].credit += take
                left -= take
            i -= 1
        if left:
            pk[-1].credit += left
            pk[-1].size = max(pk[-1].size, pk[-1].credit)  # a record's size is never below its credit
        self._rehead(acc)
        # No re-arming of the low-credit alert: refunded lookups around the threshold
        # would make it fire again and again; only a top-up re-arms it.
        self._dirty[acc.system_id] = acc

    def top_up(self, acc: Account, credit: int, bought: date | None = None, label: str = "") -> Package:
        """Add a prepaid package of `credit` micro-credits, bought today unless told."""
        return self.add_package(acc, self.new_package(acc, credit, bought, label))

    def new_package(self, acc: Account, credit: int, bought: date | None = None, label: str = "") -> Package:
        """The package a top-up of `acc` would add (not added: see add_package)."""
        if credit <= 0:
            raise ValueError("top_up: credit must be positive")
        if acc.packages is None:
            raise ValueError(f"account {acc.system_id!r} has unlimited credit; replace it with packages first")
        return Package(credit, bought or self._today(), label)

    @staticmethod
    def with_package(acc: Account, p: Package) -> list[Package]:
        """`acc`'s packages as they are once `p` is added: oldest first, `p` after its equals."""
        packages = list(acc.packages or ())
        bisect.insort_right(packages, p, key=_age)
        return packages

    def add_package(self, acc: Account, p: Package) -> Package:
        if acc.packages is None:
            raise ValueError(f"account {acc.system_id!r} has unlimited credit")
        acc.packages[:] = self.with_package(acc, p)
        self._rehead(acc)
        self._rearm_alert(acc)
        self._dirty[acc.system_id] = acc
        return p

    def _rearm_alert(self, acc: Account) -> None:
        if acc.usage.credit + acc.usage.elsewhere >= acc.settings.low_credit:
            acc.usage.low_alerted = False

    def _no_credit(self, acc: Account) -> Refusal:
        if self.on_no_credit is not None:
            self.on_no_credit(acc)
        return Refusal.NO_CREDIT

    # --- leases (shared deployments: a store such as Redis lends credit to this process) ---

    def grant(self, acc: Account, packages: Iterable[Package]) -> None:
        """Add credit leased to this process. A slice of a package already held (same
        bought date and label) joins it; emptied packages are dropped so a long-lived
        process does not accumulate them."""
        if acc.packages is None:
            raise ValueError(f"account {acc.system_id!r} has unlimited credit: nothing to lease")
        pk = [p for p in acc.packages if p.credit > 0]
        for new in packages:
            if new.credit <= 0:
                continue
            same = next((p for p in pk if p.bought == new.bought and p.label == new.label), None)
            if same is not None:
                same.credit += new.credit
                same.size = max(same.size, same.credit)
            else:
                bisect.insort_right(pk, Package(new.credit, new.bought, new.label), key=_age)
        acc.packages[:] = pk
        self._rehead(acc)
        self._rearm_alert(acc)

    def withdraw(self, acc: Account, amount: int) -> int:
        """Take back up to `amount` of this process's unspent credit, newest package first
        (a lease given back); returns what was taken."""
        if acc.packages is None or amount <= 0:
            return 0
        left = amount
        for p in reversed(acc.packages):
            take = min(p.credit, left)
            if take:
                p.credit -= take
                p.size = max(p.size - take, p.credit)
                left -= take
                if not left:
                    break
        self._rehead(acc)
        return amount - left

    def count_elsewhere(self, acc: Account, day: int, week: int, month: int, now: float) -> None:
        """Lookups other processes admitted (shared deployments): add them to this
        process's day/week/month windows, which are rolled to `now` first."""
        if now >= self._day_end or now < self._day_start:
            self._roll(now)
        self._count_period(acc)
        acc.usage.n_day = max(0, acc.usage.n_day + day)
        acc.usage.n_week = max(0, acc.usage.n_week + week)
        acc.usage.n_month = max(0, acc.usage.n_month + month)

    def _today(self) -> date:
        return self.calendar.date(time.time())

    def mark_dirty(self, acc: Account) -> None:
        """Persist this account's record with the next commit (created at run time)."""
        self._dirty[acc.system_id] = acc

    def take_dirty(self) -> list[Account]:
        """Accounts whose credit, packages or enabled flag changed since the last call."""
        dirty, self._dirty = list(self._dirty.values()), {}
        return dirty

    # --- binding ------------------------------------------------------------------------

    def check_ip(self, ip: str, now: float) -> Refusal | None:
        """IP_BANNED while `ip` is temporarily banned: call before doing any work for it."""
        until = self._banned.get(_ip_key(ip))
        if until is None:
            return None
        if now < until:
            return Refusal.IP_BANNED
        del self._banned[_ip_key(ip)]
        return None

    def record_failure(self, ip: str, now: float) -> bool:
        """Count a failed login from `ip`; True when it has just been banned."""
        if self.ban_after <= 0:
            return False
        key = _ip_key(ip)
        first, count = self._failures.get(key, (now, 0))
        if now - first > self.ban_window:
            first, count = now, 0
        count += 1
        if count >= self.ban_after:
            self._failures.pop(key, None)
            self._banned[key] = until = now + self.ban_time
            if self.on_ban is not None:
                self.on_ban(key, until)
            return True
        self._failures[key] = (first, count)
        if len(self._failures) > 10_000:  # many sources, each below the threshold: forget stale ones
            self._failures = {k: v for k, v in self._failures.items() if now - v[0] <= self.ban_window}
        return False

    def restore_bans(self, bans: Iterable[tuple[str, float]], now: float) -> None:
        """Bans still running, as the store kept them (ip key, until)."""
        for key, until in bans:
            if until > now:
                self._banned[key] = max(until, self._banned.get(key, until))

    def guessing(self, ip: str, now: float) -> bool:
        """`ip` is banned, or failed to log in more than once within the ban window."""
        key = _ip_key(ip)
        if key in self._banned:
            return True
        first, count = self._failures.get(key, (now, 0))
        return count > 1 and now - first <= self.ban_window

    def authenticate(self, system_id: str, password: str, system_type: str, ip: str,
                     now: float) -> tuple[Refusal | None, Account | None]:
        """Check a bind (or an HTTP login); the account only when it may proceed. The
        password's full check (scrypt) runs here, blocking: the server runs it on a
        worker thread instead (identify, password_known, verify_password, conclude).

        In this order, so that no answer tells a password guesser more than it must: IP
        ban, system_id, the account's IP allowlist (from outside it, every password gets
        the same answer), password, system_type (compared exactly: `HLR` is not `hlr`),
        disabled, expiry. Unknown ids and wrong passwords count towards the IP ban; the
        other refusals are not guessing."""
        refusal, acc = self.identify(system_id, ip, now)
        if acc is None:
            return refusal, None
        ok = self.password_known(acc, password)
        if ok is None:
            ok = self.verify_password(acc, password)
        return self.conclude(acc, ok, system_type, ip, now)

    def identify(self, system_id: str, ip: str, now: float,
                 subject: frozenset[tuple[str, str]] | None = None) -> tuple[Refusal | None, Account | None]:
        """The checks before the password: IP ban, system_id, allowlist, the client
        certificate (``subject``: the one the connection presented, None without one)."""
        if refusal := self.check_ip(ip, now):
            return refusal, None
        acc = self._accounts.get(system_id)
        if acc is None:
            self.record_failure(ip, now)
            return Refusal.BAD_SYSTEM_ID, None
        if acc.settings.allowed_ips and not ip_allowed(ip, acc.settings.allowed_ips):
            return Refusal.IP_NOT_ALLOWED, None
        pin = acc.settings.tls_subject
        if pin is not None and not (subject and parse_subject(pin, "") <= subject):
            return Refusal.TLS_SUBJECT, None
        return None, acc

    def password_known(self, acc: Account, password: str) -> bool | None:
        """Cheap: True when this password passed the full check before (this process),
        None when only the full check (verify_password) can tell."""
        if acc.settings.password_hash is None:  # built in memory and never stored: compare as is
            clear = acc.settings.password
            return clear is not None and hmac.compare_digest(_utf8(password), _utf8(clear))
        return True if self.verified.known(acc.system_id, acc.settings.password_hash, password) else None

    def verify_password(self, acc: Account, password: str) -> bool:
        """The full check (scrypt, tens of ms: run it off the event loop)."""
        encoded = acc.settings.password_hash
        if encoded is None:
            return bool(self.password_known(acc, password))
        return self.verified.check(acc.system_id, encoded, password)

    def conclude(self, acc: Account, password_ok: bool, system_type: str, ip: str,
                 now: float) -> tuple[Refusal | None, Account | None]:
        """The checks from the password on: password, system_type, disabled, expiry."""
        if not password_ok:
            self.record_failure(ip, now)
            return Refusal.BAD_PASSWORD, None
        expected = acc.settings.system_type
        if system_type != expected and (expected or acc.settings.service != "sms"):
            return Refusal.BAD_SYSTEM_TYPE, None
        if not acc.usage.enabled:
            return Refusal.DISABLED, None
        if now >= acc.usage.expires_at:
            return Refusal.EXPIRED, None
        self._failures.pop(_ip_key(ip), None)
        return None, acc


# --- helpers --------------------------------------------------------------------------

def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def merge_settings(record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """An account's record with ``changes`` applied: a new password replaces the hash
    (and a new hash the password)."""
    merged = dict(record)
    if "password" in changes:
        merged.pop("password_hash", None)
    if "password_hash" in changes:
        merged.pop("password", None)
    merged.update(changes)
    return merged


def _ip_key(ip: str) -> str:
    """Who a ban and a failure count apply to: an IPv4 address, or an IPv6 /64 (one
    subscriber's prefix: changing the address inside it must not reset the count)."""
    a = peer_address(ip)
    if a is None:
        return ip
    if a.version == 6:
        return str(ipaddress.IPv6Network((int(a) >> 64 << 64, 64)))
    return str(a)
