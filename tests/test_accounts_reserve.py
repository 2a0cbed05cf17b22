"""AccountBook.reserve / rollback: a lookup admitted, then given back because a later check
refused the request (the prepaid API meters a service's own limits before its account's),
leaves the account as if it had never been asked: every later decision is the same."""
import copy

import pytest
from hypothesis import given, settings

from hlrsmpp.accounts import MICRO, Account, AccountBook, Refusal, Reservation

from test_admission_agrees import T0, accounts, requests, state


def test_rollback_gives_back_token_windows_delay_and_charge():
    acc = Account.from_config({"system_id": "svc", "password": "", "credit": 1, "price": "0.5",
                               "limits": {"per_day": 1, "min_delay_ms": 60_000, "tps": 1}})
    book = AccountBook([acc])
    hold = book.reserve(acc, "44", T0)
    assert isinstance(hold, Reservation)
    assert acc.credit == MICRO // 2 and acc.usage.n_day == 1
    assert book.admit(acc, "44", T0 + 1) is Refusal.LIMIT_DELAY
    book.rollback(hold)
    assert acc.credit == MICRO and acc.usage.n_day == 0 and acc.packages[0].credit == MICRO
    assert book.admit(acc, "44", T0 + 1) is None     # as though the reservation never was
    hold = book.reserve(acc, "44", T0 + 120)
    assert hold is Refusal.LIMIT_DAY                 # a refusal is not a reservation


def test_commit_keeps_the_lookup():
    acc = Account.from_config({"system_id": "svc", "password": "", "credit": 1, "limits": {"per_day": 1}})
    book = AccountBook([acc])
    hold = book.reserve(acc, "44", T0)
    book.commit(hold)
    assert book.admit(acc, "44", T0 + 1) is Refusal.LIMIT_DAY and acc.credit == MICRO - MICRO // 10


@settings(max_examples=300, deadline=None)
@given(accounts, requests)
def test_a_reservation_rolled_back_changes_no_later_decision(acc, reqs):
    plain = copy.deepcopy(acc)
    book, reference = AccountBook([acc]), AccountBook([plain])
    now = T0
    for gap, ccs in reqs:
        now += gap
        for cc in ccs:
            hold = book.reserve(acc, cc, now)
            if isinstance(hold, Reservation):
                book.rollback(hold)
            assert book.admit(acc, cc, now) is reference.admit(plain, cc, now)
            assert state(acc) == state(plain)
            assert acc.usage.tokens == pytest.approx(plain.usage.tokens, abs=1e-9)
