"""In-memory account policy: who may bind, which lookup is admitted, what it costs.

Pure and synchronous (no I/O, no asyncio). `AccountBook.admit` runs once per submit_sm, so
its path touches only precomputed floats and ints: the calendar windows (day, ISO week,
month in the book's timezone) are epoch boundaries recomputed only when `now` leaves the
current day. Credit is kept in integer micro-credits so 100,000 charges of 0.1 stay exact.
"""
from __future__ import annotations

import bisect
import hmac
import ipaddress
import logging
import math
import time
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable

from .allowlist import IpNetwork, ip_allowed, parse_allowlist, peer_address, parse_subject
from .calendar import Calendar
from .passwords import Verified, check_hash, hash_password
from .refusal import Refusal

log = logging.getLogger(__name__)

MICRO = 1_000_000
DEFAULT_PRICE = 100_000  # 0.1 credit per lookup, the usual price of an HLR lookup
INF = math.inf

# SMPP 3.4 §4.1 C-Octet String sizes minus the NUL: longer values could never bind.
MAX_SYSTEM_ID, MAX_PASSWORD, MAX_SYSTEM_TYPE = 15, 8, 12

# Keys an account may carry in the YAML. Anything else is a typo and is refused.
ACCOUNT_KEYS = frozenset({
    "system_id", "password", "password_hash", "system_type", "credit", "packages", "price", "expires",
    "coverage", "limits", "allowed_ips", "max_tx", "low_credit", "data_coding", "enabled",
    "receipt", "outbind", "trace", "tls_subject"})
#: Receipt profiles: the standard text; the standard text plus imsi/msc/mccmnc keys;
#: the standard text plus vendor TLVs carrying MCC and MNC.
RECEIPT_PROFILES = frozenset({"standard", "extended", "tlv"})
LIMIT_KEYS = frozenset({"per_day", "per_week", "per_month", "min_delay_ms", "tps", "burst"})
PACKAGE_KEYS = frozenset({"credit", "bought", "label", "size"})


def to_micro(x: float | str | int | Decimal) -> int:
    """Credits to integer micro-credits, exactly: the decimal text is what the user meant."""
    if isinstance(x, bool):
        raise ValueError(f"not an amount: {x!r}")
    if isinstance(x, int):
        return x * MICRO
    try:
        d = Decimal(str(x).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {x!r}") from None
    if not d.is_finite():
        raise ValueError(f"not an amount: {x!r}")
    m = d * MICRO
    if m != m.to_integral_value():
        raise ValueError(f"amount {x!r} has more than 6 decimals")
    return int(m)


def from_micro(m: int) -> str:
    """Exact decimal text of micro-credits: 1_500_000 -> '1.5'."""
    return format(Decimal(m).scaleb(-6).normalize(), "f")


@dataclass(frozen=True, slots=True)
class Limits:
    per_day: int | None = None
    per_week: int | None = None
    per_month: int | None = None
    min_delay_ms: int = 0
    tps: float | None = None
    burst: float | None = None  # token bucket depth; None: max(1, tps)

    @property
    def depth(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.tps or 0.0)

    @classmethod
    def from_config(cls, d: dict | None, where: str = "limits") -> Limits:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a mapping, got {d!r}")
        _no_unknown(d, LIMIT_KEYS, where)
        kw: dict[str, Any] = {}
        for k in ("per_day", "per_week", "per_month"):
            kw[k] = _int(d.get(k), f"{where}.{k}", minimum=0, optional=True)
        kw["min_delay_ms"] = _int(d.get("min_delay_ms", 0), f"{where}.min_delay_ms", minimum=0)
        for k in ("tps", "burst"):
            v = d.get(k)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < INF:
                    raise ValueError(f"{where}.{k}: expected a positive number, got {v!r}")
                kw[k] = float(v)
        if kw.get("burst") is not None and kw.get("tps") is None:
            raise ValueError(f"{where}.burst: needs tps")
        if kw.get("burst") is not None and kw["burst"] < 1:
            raise ValueError(f"{where}.burst: must be at least 1, got {kw['burst']!r}")
        return cls(**kw)

    def to_config(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}


@dataclass(slots=True)
class Package:
    """A prepaid credit package: consumed oldest `bought` first."""
    credit: int  # micro-credits remaining
    bought: date | None = None  # None: opening balance, older than any dated package
    label: str = ""
    size: int | None = None  # micro-credits bought; refunds refill up to it (None: credit)

    def __post_init__(self):
        if self.size is None:
            self.size = self.credit

    @property
    def age_key(self) -> tuple:
        return (self.bought is not None, self.bought or date.min)

    def to_record(self) -> dict:
        r = {"credit": from_micro(self.credit), "size": from_micro(self.size)}
        if self.bought is not None:
            r["bought"] = self.bought.isoformat()
        if self.label:
            r["label"] = self.label
        return r


@dataclass(slots=True)
class Account:
    system_id: str
    # In clear only when the YAML file or the API gave it so, and only in memory: the
    # store keeps password_hash, a salted scrypt hash (passwords.py).
    password: str | None
    system_type: str = "HLR"
    price: int = DEFAULT_PRICE  # micro-credits per accepted lookup
    expires: date | None = None  # usable through that whole day, in the book's timezone
    coverage: frozenset[str] = frozenset()  # country calling codes; empty: all
    limits: Limits = Limits()
    allowed_ips: tuple[IpNetwork, ...] = ()  # empty: any
    max_tx: int = 10
    low_credit: int = 0  # micro-credits; alert when credit falls below it; 0: off
    data_coding: int | None = None  # receipt data_coding; None: the server's default
    enabled: bool = True
    packages: list[Package] | None = None  # None: unlimited credit
    receipt: dict = field(default_factory=lambda: {"profile": "standard"})  # profile, mcc_tag, mnc_tag
    outbind: dict | None = None  # {host, port, system_id?, password?}: we connect out to deliver
    trace: bool | str = False    # PDU trace: False, True (kept in memory), or a file path
    password_hash: str | None = None  # None until hashed (Server.start, or to_record)
    tls_subject: str | None = None  # the client certificate's subject its binds must present

    # Runtime state, derived by AccountBook (not persisted: the day/week/month counts are
    # restored from the history at start-up, see restore_counts; the rest restarts empty).
    _expires_at: float = field(default=INF, init=False, repr=False, compare=False)
    _credit: int = field(default=0, init=False, repr=False, compare=False)
    _head: int = field(default=0, init=False, repr=False, compare=False)  # oldest non-empty package
    _low_alerted: bool = field(default=False, init=False, repr=False, compare=False)
    _delay: float = field(default=0.0, init=False, repr=False, compare=False)
    _last: float = field(default=-INF, init=False, repr=False, compare=False)
    _tps: float = field(default=0.0, init=False, repr=False, compare=False)
    _depth: float = field(default=0.0, init=False, repr=False, compare=False)
    _tokens: float = field(default=0.0, init=False, repr=False, compare=False)
    _need: float = field(default=1.0, init=False, repr=False, compare=False)  # a token, less rounding
    _stamp: float = field(default=-INF, init=False, repr=False, compare=False)
    _cap_day: float = field(default=INF, init=False, repr=False, compare=False)
    _cap_week: float = field(default=INF, init=False, repr=False, compare=False)
    _cap_month: float = field(default=INF, init=False, repr=False, compare=False)
    _day: float = field(default=-INF, init=False, repr=False, compare=False)  # start of counted day
    _week: float = field(default=-INF, init=False, repr=False, compare=False)
    _month: float = field(default=-INF, init=False, repr=False, compare=False)
    n_day: int = field(default=0, init=False, repr=False, compare=False)
    n_week: int = field(default=0, init=False, repr=False, compare=False)
    n_month: int = field(default=0, init=False, repr=False, compare=False)
    # Shared deployments (Redis): credit of this account held outside this process (the
    # free pool and other processes' leases); 0 with the embedded store.
    _elsewhere: int = field(default=0, init=False, repr=False, compare=False)

    @property
    def credit(self) -> int | None:
        return None if self.packages is None else sum(p.credit for p in self.packages) + self._elsewhere

    @classmethod
    def from_config(cls, d: dict) -> Account:
        """Build from a YAML account mapping; ValueError names account and key."""
        if not isinstance(d, dict):
            raise ValueError(f"account: expected a mapping, got {d!r}")
        sid = d.get("system_id")
        if not isinstance(sid, str) or not 0 < len(sid) <= MAX_SYSTEM_ID:
            raise ValueError(f"account {sid!r}: system_id: expected a string of 1..{MAX_SYSTEM_ID} "
                             "characters (quote digits in YAML)")
        at = f"account {sid!r}"
        _no_unknown(d, ACCOUNT_KEYS, at)
        pw, pw_hash = d.get("password"), d.get("password_hash")
        if (pw is None) == (pw_hash is None):
            raise ValueError(f"{at}: password: give it, or password_hash (from `hlrsmpp "
                             "hash-password`): one of the two")
        if pw is not None and (not isinstance(pw, str) or len(pw) > MAX_PASSWORD):
            # YAML reads 0123 as the integer 83: make the user quote rather than guess.
            raise ValueError(f"{at}: password: expected a string of at most {MAX_PASSWORD} "
                             f"characters (quote digits in YAML), got {type(pw).__name__}")
        if pw_hash is not None:
            try:
                check_hash(pw_hash)
            except ValueError as e:
                raise ValueError(f"{at}: password_hash: {e}") from None
        st = d.get("system_type", "HLR")
        if not isinstance(st, str) or len(st) > MAX_SYSTEM_TYPE:
            raise ValueError(f"{at}: system_type: expected a string of at most {MAX_SYSTEM_TYPE} characters")
        return cls(
            system_id=sid, password=pw, password_hash=pw_hash, system_type=st,
            price=_amount(d.get("price", Decimal("0.1")), f"{at}: price"),
            expires=_date(d.get("expires"), f"{at}: expires", optional=True),
            coverage=_coverage(d.get("coverage"), f"{at}: coverage"),
            limits=Limits.from_config(d.get("limits"), f"{at}: limits"),
            allowed_ips=parse_allowlist(d.get("allowed_ips"), f"{at}: allowed_ips"),
            max_tx=_int(d.get("max_tx", 10), f"{at}: max_tx", minimum=0),
            low_credit=_amount(d.get("low_credit", 0), f"{at}: low_credit"),
            data_coding=_int(d.get("data_coding"), f"{at}: data_coding", minimum=0, maximum=255, optional=True),
            enabled=_bool(d.get("enabled", True), f"{at}: enabled"),
            packages=_packages(d, at),
            receipt=_receipt(d.get("receipt"), f"{at}: receipt"),
            outbind=_outbind(d.get("outbind"), f"{at}: outbind"),
            trace=_trace(d.get("trace", False), f"{at}: trace"),
            tls_subject=_tls_subject(d.get("tls_subject"), f"{at}: tls_subject"),
        )

    def to_record(self) -> dict:
        """The durable part (config + packages) as a JSON-able dict; from_record inverts it.

        Amounts are exact decimal strings, so the record is also valid YAML config."""
        if self.password_hash is None:  # made on a worker thread at start-up; else now, once
            self.password_hash = hash_password(self.password)
        r: dict[str, Any] = {"system_id": self.system_id, "password_hash": self.password_hash,
                             "system_type": self.system_type, "price": from_micro(self.price)}
        if self.expires is not None:
            r["expires"] = self.expires.isoformat()
        if self.coverage:
            r["coverage"] = sorted(self.coverage, key=lambda c: (len(c), c))
        if lim := self.limits.to_config():
            r["limits"] = lim
        if self.allowed_ips:
            r["allowed_ips"] = [str(n) for n in self.allowed_ips]
        r["max_tx"] = self.max_tx
        if self.low_credit:
            r["low_credit"] = from_micro(self.low_credit)
        if self.data_coding is not None:
            r["data_coding"] = self.data_coding
        r["enabled"] = self.enabled
        if self.receipt != {"profile": "standard"}:
            r["receipt"] = dict(self.receipt)
        if self.outbind is not None:
            r["outbind"] = dict(self.outbind)
        if self.trace:
            r["trace"] = self.trace
        if self.tls_subject:
            r["tls_subject"] = self.tls_subject
        if self.packages is not None:
            r["packages"] = [p.to_record() for p in self.packages]
        return r

    @classmethod
    def from_record(cls, r: dict) -> Account:
        return cls.from_config(r)


class AccountBook:
    """Every account of this process, with the rate/period counters and IP bans.

    After changing a live account's fields, call replace(account) so derived state follows."""

    def __init__(self, accounts: Iterable[Account] = (), tz: str = "UTC", ban_after: int = 5,
                 ban_window: float = 60.0, ban_time: float = 300.0,
                 on_low_credit: Callable[[Account], None] | None = None):
        self.calendar = Calendar(tz)
        self.ban_after, self.ban_window, self.ban_time = ban_after, ban_window, ban_time
        self.on_low_credit = on_low_credit
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

    def __iter__(self):
        return iter(list(self._accounts.values()))

    def __len__(self) -> int:
        return len(self._accounts)

    def add(self, acc: Account) -> Account:
        if acc.system_id in self._accounts:
            raise ValueError(f"account {acc.system_id!r} already exists")
        self._derive(acc)
        acc._tokens, acc._low_alerted = acc._depth, False
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
            for f in fields(Account):
                if f.init and (with_packages or f.name != "packages"):
                    setattr(live, f.name, getattr(new, f.name))
        self._dirty[live.system_id] = live  # the record (config + packages) changed
        had_tps = live._tps
        self._derive(live)
        live._tokens = min(live._tokens, live._depth) if had_tps else live._depth
        self._rearm_alert(live)
        return live

    def remove(self, system_id: str) -> Account | None:
        acc = self._accounts.pop(system_id, None)
        if acc is not None:
            acc.enabled = False  # a session still holding it gets DISABLED, not free lookups
        return acc

    def disable(self, system_id: str, enabled: bool = False) -> Account:
        acc = self._accounts[system_id]
        acc.enabled = enabled
        self._dirty[system_id] = acc
        return acc

    def _derive(self, acc: Account) -> None:
        acc._expires_at = INF if acc.expires is None else self.calendar.midnight(acc.expires + timedelta(days=1))
        if acc.packages is not None:
            acc.packages.sort(key=Package.age_key.fget)  # stable: config order breaks ties
        self._rehead(acc)
        lim = acc.limits
        acc._delay = lim.min_delay_ms / 1000.0
        acc._tps = lim.tps or 0.0
        acc._depth = lim.depth if lim.tps else 0.0
        # Epoch floats resolve ~0.24 µs today, so `now - stamp` may fall a hair short of the
        # true gap; forgive 1 µs of refill so a client sending exactly at `tps` is not refused.
        acc._need = 1.0 - min(acc._tps * 1e-6, 1e-3)
        acc._cap_day = INF if lim.per_day is None else lim.per_day
        acc._cap_week = INF if lim.per_week is None else lim.per_week
        acc._cap_month = INF if lim.per_month is None else lim.per_month

    @staticmethod
    def _rehead(acc: Account) -> None:
        pk = acc.packages or []
        acc._credit = sum(p.credit for p in pk)
        acc._head = next((i for i, p in enumerate(pk) if p.credit > 0), len(pk))

    # --- calendar ---------------------------------------------------------------------

    def _roll(self, now: float) -> None:
        """Copy the current day/week/month starts to plain floats; runs once per day, not
        per lookup."""
        d = self.calendar.day(now)
        self._day_start, self._day_end, self._week_start, self._month_start = (
            d.start, d.end, d.week_start, d.month_start)

    def _count_period(self, acc: Account) -> None:
        # Called when the account's counters belong to another day than the book's.
        if acc._day != self._day_start:
            acc._day, acc.n_day = self._day_start, 0
        if acc._week != self._week_start:
            acc._week, acc.n_week = self._week_start, 0
        if acc._month != self._month_start:
            acc._month, acc.n_month = self._month_start, 0

    def periods(self, now: float) -> tuple[float, float, float]:
        """The starts of the current day, week and month (epoch seconds, in the book's
        timezone): the windows of the per_day, per_week and per_month limits."""
        if now >= self._day_end or now < self._day_start:
            self._roll(now)
        return self._day_start, self._week_start, self._month_start

    def has_limits(self) -> bool:
        """Whether an account has a day, week or month limit."""
        return any(min(acc._cap_day, acc._cap_week, acc._cap_month) < INF for acc in self._accounts.values())

    def restore_counts(self, counts: dict[str, tuple[int, int, int]], now: float) -> None:
        """Each account's lookups of the current day, week and month, as the history holds
        them: a restart does not give an account its limits afresh."""
        day, week, month = self.periods(now)
        for sid, (n_day, n_week, n_month) in counts.items():
            acc = self._accounts.get(sid)
            if acc is not None:
                acc._day, acc._week, acc._month = day, week, month
                acc.n_day, acc.n_week, acc.n_month = n_day, n_week, n_month

    def counters(self, acc: Account, now: float | None = None) -> dict:
        """For the admin API: this day/week/month's accepted lookups and the credit."""
        self.periods(time.time() if now is None else now)
        self._count_period(acc)
        return {"day": acc.n_day, "week": acc.n_week, "month": acc.n_month,
                "credit": acc.credit, "tokens": acc._tokens if acc._tps else None}

    # --- admission and billing (the hot path) ----------------------------------------

    def admit(self, acc: Account, cc: str, now: float) -> Refusal | None:
        """Admit one lookup to country calling code `cc` at epoch `now`, charging it.

        A refused lookup charges and counts nothing."""
        if now >= self._day_end or now < self._day_start:
            self._roll(now)
        if now >= acc._expires_at:
            return Refusal.EXPIRED
        if not acc.enabled:
            return Refusal.DISABLED
        if acc.coverage and cc not in acc.coverage:
            return Refusal.NO_COVERAGE
        if acc._delay:
            since = now - acc._last
            if 0.0 <= since < acc._delay:  # a clock stepped back does not lock the account
                return Refusal.LIMIT_DELAY
        tps = acc._tps
        if tps:
            tokens = acc._tokens
            if now > acc._stamp:
                tokens += (now - acc._stamp) * tps
                if tokens > acc._depth:
                    tokens = acc._depth
                acc._tokens, acc._stamp = tokens, now
            if tokens < acc._need:
                return Refusal.LIMIT_TPS
        if acc._day != self._day_start:
            self._count_period(acc)
        if acc.n_day >= acc._cap_day:
            return Refusal.LIMIT_DAY
        if acc.n_week >= acc._cap_week:
            return Refusal.LIMIT_WEEK
        if acc.n_month >= acc._cap_month:
            return Refusal.LIMIT_MONTH
        price = acc.price
        if acc.packages is not None and acc._credit < price:
            return self._no_credit(acc)
        # Accepted: from here on nothing refuses.
        if tps:
            acc._tokens -= 1.0
        acc._last = now
        acc.n_day += 1
        acc.n_week += 1
        acc.n_month += 1
        if price and acc.packages is not None:
            self._charge(acc, price)
        return None

    def admit_many(self, acc: Account, ccs: list[str], now: float) -> list[Refusal | None]:
        """Admit a batch (HTTP lookup of up to 100 numbers, submit_multi) as ONE request.

        Per number only for coverage: uncovered numbers get NO_COVERAGE and cost nothing.
        The covered rest is all-or-nothing: one min_delay gap and one tps token for the
        request, every period window and the credit must hold all of them, else each gets
        the batch's refusal. The caller answers a single error when all refusals agree."""
        covered = [not acc.coverage or cc in acc.coverage for cc in ccs]
        n = sum(covered)
        if n == 0:
            return [Refusal.NO_COVERAGE] * len(ccs)
        refusal = self._admit_n(acc, n, now)
        if refusal is not None:
            return [refusal] * len(ccs)
        return [None if c else Refusal.NO_COVERAGE for c in covered]

    def _admit_n(self, acc: Account, n: int, now: float) -> Refusal | None:
        if now >= self._day_end or now < self._day_start:
            self._roll(now)
        if now >= acc._expires_at:
            return Refusal.EXPIRED
        if not acc.enabled:
            return Refusal.DISABLED
        if acc._delay and 0.0 <= now - acc._last < acc._delay:
            return Refusal.LIMIT_DELAY
        if acc._tps:
            if now > acc._stamp:
                acc._tokens = min(acc._depth, acc._tokens + (now - acc._stamp) * acc._tps)
                acc._stamp = now
            if acc._tokens < acc._need:
                return Refusal.LIMIT_TPS
        self._count_period(acc)
        if acc.n_day + n > acc._cap_day:
            return Refusal.LIMIT_DAY
        if acc.n_week + n > acc._cap_week:
            return Refusal.LIMIT_WEEK
        if acc.n_month + n > acc._cap_month:
            return Refusal.LIMIT_MONTH
        cost = acc.price * n
        if acc.packages is not None and acc._credit < cost:
            return self._no_credit(acc)
        if acc._tps:
            acc._tokens -= 1.0
        acc._last = now
        acc.n_day += n
        acc.n_week += n
        acc.n_month += n
        if cost and acc.packages is not None:
            self._charge(acc, cost)
        return None

    def _charge(self, acc: Account, amount: int) -> None:
        # Oldest package first, as a prepaid customer expects; one charge may empty a package and go on.
        acc._credit -= amount
        pk, i = acc.packages, acc._head
        while amount:
            p = pk[i]
            if p.credit > amount:
                p.credit -= amount
                break
            amount -= p.credit
            p.credit = 0
            i += 1
        acc._head = i
        self._dirty[acc.system_id] = acc
        if (acc._credit < acc.low_credit and not acc._low_alerted
                and acc._credit + acc._elsewhere < acc.low_credit):
            acc._low_alerted = True
            if self.on_low_credit is not None:
                try:
                    self.on_low_credit(acc)
                except Exception:  # the lookup is already charged; an alert bug must not fail it
                    log.exception("low-credit alert for %s failed", acc.system_id)

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
        i = min(acc._head, len(pk) - 1)
        left = amount
        while left and i >= 0:
            room = pk[i].size - pk[i].credit
            if room > 0:
                take = min(room, left)
                pk[i].credit += take
                left -= take
            i -= 1
        pk[-1].credit += left
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
        packages = list(acc.packages)
        bisect.insort_right(packages, p, key=Package.age_key.fget)
        return packages

    def add_package(self, acc: Account, p: Package) -> Package:
        acc.packages[:] = self.with_package(acc, p)
        self._rehead(acc)
        self._rearm_alert(acc)
        self._dirty[acc.system_id] = acc
        return p

    def _rearm_alert(self, acc: Account) -> None:
        if acc._credit + acc._elsewhere >= acc.low_credit:
            acc._low_alerted = False

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
                bisect.insort_right(pk, Package(new.credit, new.bought, new.label), key=Package.age_key.fget)
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
        acc.n_day = max(0, acc.n_day + day)
        acc.n_week = max(0, acc.n_week + week)
        acc.n_month = max(0, acc.n_month + month)

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
        if refusal is not None:
            return refusal, None
        ok = self.password_known(acc, password)
        if ok is None:
            ok = self.verify_password(acc, password)
        return self.conclude(acc, ok, system_type, ip, now)

    def identify(self, system_id: str, ip: str, now: float,
                 subject: frozenset | None = None) -> tuple[Refusal | None, Account | None]:
        """The checks before the password: IP ban, system_id, allowlist, the client
        certificate (``subject``: the one the connection presented, None without one)."""
        if refusal := self.check_ip(ip, now):
            return refusal, None
        acc = self._accounts.get(system_id)
        if acc is None:
            self.record_failure(ip, now)
            return Refusal.BAD_SYSTEM_ID, None
        if acc.allowed_ips and not ip_allowed(ip, acc.allowed_ips):
            return Refusal.IP_NOT_ALLOWED, None
        if acc.tls_subject is not None and not (subject and parse_subject(acc.tls_subject, "") <= subject):
            return Refusal.TLS_SUBJECT, None
        return None, acc

    def password_known(self, acc: Account, password: str) -> bool | None:
        """Cheap: True when this password passed the full check before (this process),
        None when only the full check (verify_password) can tell."""
        if acc.password_hash is None:  # built in memory and never stored: compare as is
            return acc.password is not None and hmac.compare_digest(_utf8(password), _utf8(acc.password))
        return True if self.verified.known(acc.system_id, acc.password_hash, password) else None

    def verify_password(self, acc: Account, password: str) -> bool:
        """The full check (scrypt, tens of ms: run it off the event loop)."""
        encoded = acc.password_hash
        if encoded is None:
            return bool(self.password_known(acc, password))
        return self.verified.check(acc.system_id, encoded, password)

    def conclude(self, acc: Account, password_ok: bool, system_type: str, ip: str,
                 now: float) -> tuple[Refusal | None, Account | None]:
        """The checks from the password on: password, system_type, disabled, expiry."""
        if not password_ok:
            self.record_failure(ip, now)
            return Refusal.BAD_PASSWORD, None
        if system_type != acc.system_type:
            return Refusal.BAD_SYSTEM_TYPE, None
        if not acc.enabled:
            return Refusal.DISABLED, None
        if now >= acc._expires_at:
            return Refusal.EXPIRED, None
        self._failures.pop(_ip_key(ip), None)
        return None, acc


# --- helpers --------------------------------------------------------------------------

def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def merge_settings(record: dict, changes: dict) -> dict:
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


def _tls_subject(v, where: str) -> str | None:
    if v is None:
        return None
    parse_subject(v, where)
    return v.strip()


def _no_unknown(d: dict, known: frozenset, where: str) -> None:
    if extra := set(d) - known:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}; "
                         f"expected some of {', '.join(sorted(known))}")


def _int(v, where: str, minimum: int | None = None, maximum: int | None = None,
         optional: bool = False) -> int | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{where}: expected an integer, got {v!r}")
    if minimum is not None and v < minimum or maximum is not None and v > maximum:
        raise ValueError(f"{where}: {v} out of range {minimum}..{'' if maximum is None else maximum}")
    return v


def _receipt(v, where: str) -> dict:
    """``standard`` | ``extended`` | ``tlv``, or {profile, mcc_tag, mnc_tag} (vendor TLV tags)."""
    if v is None:
        return {"profile": "standard"}
    if isinstance(v, str):
        v = {"profile": v}
    if not isinstance(v, dict):
        raise ValueError(f"{where}: expected a profile name or a mapping")
    _no_unknown(v, frozenset({"profile", "mcc_tag", "mnc_tag"}), where)
    out = {"profile": v.get("profile", "standard")}
    if out["profile"] == "seed":   # the standard profile's former name, in older files and stores
        out["profile"] = "standard"
    if out["profile"] not in RECEIPT_PROFILES:
        raise ValueError(f"{where}: profile must be one of {', '.join(sorted(RECEIPT_PROFILES))}")
    for key, default in (("mcc_tag", 0x1401), ("mnc_tag", 0x1402)):
        tag = v.get(key, default)
        tag = int(tag, 0) if isinstance(tag, str) else tag
        # SMPP 3.4 §5.3.2: 0x1400-0x3FFF are reserved for SMSC vendors.
        out[key] = _int(tag, f"{where}: {key}", minimum=0x1400, maximum=0x3FFF)
    return out


def _outbind(v, where: str) -> dict | None:
    if v is None:
        return None
    if not isinstance(v, dict) or "host" not in v or "port" not in v:
        raise ValueError(f"{where}: expected {{host, port}} of the ESME to connect to")
    _no_unknown(v, frozenset({"host", "port", "system_id", "password"}), where)
    out = {"host": str(v["host"]), "port": _int(v["port"], f"{where}: port", minimum=1, maximum=65535)}
    for key, size in (("system_id", MAX_SYSTEM_ID), ("password", MAX_PASSWORD)):
        if key in v:
            if not isinstance(v[key], str) or len(v[key]) > size:
                raise ValueError(f"{where}: {key}: a string of at most {size} characters")
            out[key] = v[key]
    return out


def _trace(v, where: str) -> bool | str:
    if isinstance(v, bool) or (isinstance(v, str) and v):
        return v
    raise ValueError(f"{where}: true (in memory), false, or a file path")


def _bool(v, where: str) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{where}: expected true or false, got {v!r}")
    return v


def _amount(v, where: str) -> int:
    try:
        m = to_micro(v)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if m < 0:
        raise ValueError(f"{where}: must not be negative, got {v!r}")
    return m


def _date(v, where: str, optional: bool = False) -> date | None:
    if v is None and optional:
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v.strip())
        except ValueError:
            pass
    raise ValueError(f"{where}: expected a date YYYY-MM-DD, got {v!r}")


def _coverage(v, where: str) -> frozenset[str]:
    if v is None:
        return frozenset()
    items = v if isinstance(v, (list, tuple, set, frozenset)) else [v]
    out = set()
    for c in items:
        s = str(c).strip().lstrip("+") if not isinstance(c, bool) else ""
        if not (s.isdigit() and s.isascii() and 1 <= len(s) <= 3 and s[0] != "0"):
            raise ValueError(f"{where}: {c!r} is not a country calling code (1 to 3 digits)")
        out.add(s)
    return frozenset(out)


def _packages(d: dict, at: str) -> list[Package] | None:
    if "credit" in d and "packages" in d:
        raise ValueError(f"{at}: give credit or packages, not both")
    if "credit" in d:
        return [Package(_amount(d["credit"], f"{at}: credit"))]
    if "packages" not in d:
        return None  # neither: unlimited credit
    ps = d["packages"]
    if not isinstance(ps, list):
        raise ValueError(f"{at}: packages: expected a list, got {ps!r}")
    out = []
    for i, p in enumerate(ps):
        w = f"{at}: packages[{i}]"
        if not isinstance(p, dict) or "credit" not in p:
            raise ValueError(f"{w}: expected a mapping with credit")
        _no_unknown(p, PACKAGE_KEYS, w)
        credit = _amount(p["credit"], f"{w}.credit")
        size = _amount(p["size"], f"{w}.size") if p.get("size") is not None else credit
        if size < credit:
            raise ValueError(f"{w}.size: smaller than credit")
        label = p.get("label", "")
        if not isinstance(label, str):
            raise ValueError(f"{w}.label: expected a string, got {label!r}")
        out.append(Package(credit, _date(p.get("bought"), f"{w}.bought", optional=True), label, size))
    return out
