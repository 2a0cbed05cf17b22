"""AccountBook.admit (one lookup, per submit_sm) and AccountBook.admit_many (a batch:
submit_multi, an HTTP lookup of several numbers) decide the same rules, in one body
(`admit` takes n lookups as one request). These properties hold a batch to n single
lookups, with `admit` as the reference.

The batch semantics, as `admit_many` implements them:
- coverage is per number and decided first: an uncovered number gets NO_COVERAGE and costs
  nothing; when no number is covered, every number gets NO_COVERAGE and nothing changes,
  even for an expired or disabled account (a single lookup says EXPIRED or DISABLED there:
  the one place where a batch of one differs from a single lookup);
- the n covered numbers are ONE request: expiry, the enabled flag, the min_delay gap and one
  tps token apply once, as to one lookup;
- the day, week and month windows and the credit must hold all n: the batch is accepted
  exactly when n single lookups at that instant (the per-request rules counted once) would
  all be accepted, and then charges and counts exactly what they would;
- otherwise every number gets one refusal and nothing is charged or counted: the refusal of
  the per-request rules if one applies, else the first of LIMIT_DAY, LIMIT_WEEK, LIMIT_MONTH,
  NO_CREDIT that n single lookups would run into with that rule alone.
"""
import copy
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from hlrsmpp.accounts import Account, AccountBook, AccountSettings, Limits, Package
from hlrsmpp.accounts.book import INF
from hlrsmpp.accounts.refusal import Refusal as R

T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc).timestamp()  # a Monday
CCS = ["1", "44", "359"]

limits = st.builds(
    Limits,
    per_day=st.none() | st.integers(0, 12), per_week=st.none() | st.integers(0, 20),
    per_month=st.none() | st.integers(0, 30), min_delay_ms=st.sampled_from([0, 0, 200, 1500]),
    tps=st.none() | st.sampled_from([0.5, 1.0, 3.0]))
packages = st.none() | st.lists(
    st.builds(Package, st.integers(0, 2_000_000), st.none() | st.sampled_from([date(2026, 1, 5), date(2026, 2, 1)])),
    max_size=3)
accounts = st.builds(
    lambda price, lim, pk, cov, expires: Account(AccountSettings(system_id="a", password="pw", price=price,
                                                                 limits=lim, coverage=frozenset(cov),
                                                                 expires=expires), pk),
    st.sampled_from([0, 1, 100_000, 250_000]), limits, packages,
    st.sets(st.sampled_from(CCS), max_size=2), st.none() | st.sampled_from([date(2026, 3, 2), date(2026, 3, 10)]))
# Each request: seconds since the previous one, and its numbers' country codes.
requests = st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.9, 2.0, 3600.0, 86_400.0]),
                              st.lists(st.sampled_from(CCS), min_size=1, max_size=6)),
                    min_size=1, max_size=12)


def state(acc: Account) -> tuple:
    pk = None if acc.packages is None else [(p.credit, p.bought) for p in acc.packages]
    return (acc.credit, pk, acc.usage.n_day, acc.usage.n_week, acc.usage.n_month, acc.usage.last)


def singly(book: AccountBook, acc: Account, ccs: list[str], now: float) -> tuple[R | None, int]:
    """n single lookups at `now`, the per-request rules (min_delay, tps) counted once: the
    first refusal and how many were admitted before it."""
    first = book.admit(acc, ccs[0], now)
    if first is not None:
        return first, 0
    acc.usage.delay, acc.usage.tps = 0.0, 0.0
    for i, cc in enumerate(ccs[1:], 1):
        refusal = book.admit(acc, cc, now)
        if refusal is not None:
            return refusal, i
    return None, len(ccs)


def reference(book: AccountBook, acc: Account, ccs: list[str], now: float):
    """The statuses and the account's state `admit_many` must give, from `admit` alone."""
    covered = [cc for cc in ccs if not acc.settings.coverage or cc in acc.settings.coverage]
    if not covered:
        return [R.NO_COVERAGE] * len(ccs), state(acc), acc.usage.tokens
    b, a = copy.deepcopy((book, acc))
    delay, tps = a.usage.delay, a.usage.tps
    refusal, admitted = singly(b, a, covered, now)
    if refusal is None:
        a.usage.delay, a.usage.tps = delay, tps
        return [None if cc in covered else R.NO_COVERAGE for cc in ccs], state(a), a.usage.tokens
    if len(covered) == 1 or refusal in (R.EXPIRED, R.DISABLED, R.LIMIT_DELAY, R.LIMIT_TPS):
        return [refusal] * len(ccs), state(a), a.usage.tokens
    # Refused by a window or the credit: the batch names the first rule that n lookups break.
    for rule in (R.LIMIT_DAY, R.LIMIT_WEEK, R.LIMIT_MONTH, R.NO_CREDIT):
        b1, a1 = copy.deepcopy((book, acc))
        for cap, r in (("cap_day", R.LIMIT_DAY), ("cap_week", R.LIMIT_WEEK), ("cap_month", R.LIMIT_MONTH)):
            if r != rule:
                setattr(a1.usage, cap, INF)
        if rule != R.NO_CREDIT:
            a1.packages = None
        if singly(b1, a1, covered, now)[0] == rule:
            break
    else:
        pytest.fail("the single lookups were refused, but by no rule alone")
    # Nothing charged or counted; the tps bucket refilled to `now`, its token not taken.
    untouched = copy.deepcopy(acc)
    b._count_period(untouched)
    return [rule] * len(ccs), state(untouched), a.usage.tokens + (1.0 if tps and admitted else 0.0)


@settings(max_examples=300, deadline=None)
@given(accounts, requests)
def test_a_batch_decides_as_its_single_lookups(acc, reqs):
    book = AccountBook([acc])
    now = T0
    for gap, ccs in reqs:
        now += gap
        statuses, after, tokens = reference(book, acc, ccs, now)
        assert book.admit_many(acc, ccs, now) == statuses
        assert state(acc) == after
        assert acc.usage.tokens == pytest.approx(tokens, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(accounts, requests)
def test_a_batch_of_one_is_a_single_lookup(acc, reqs):
    single = copy.deepcopy(acc)
    book, book1 = AccountBook([acc]), AccountBook([single])
    now = T0
    for gap, ccs in reqs:
        now += gap
        expected = book1.admit(single, ccs[0], now)
        if single.settings.coverage and ccs[0] not in single.settings.coverage:
            expected = R.NO_COVERAGE  # the batch decides coverage first (see the module docstring)
        assert book.admit_many(acc, ccs[:1], now) == [expected]
        assert state(acc) == state(single) and acc.usage.tokens == single.usage.tokens and acc.usage.stamp == single.usage.stamp
