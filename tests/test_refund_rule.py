"""Credit given back is put into packages by one rule, written twice: in Python
(AccountBook.refund: a lookup refunded in this process) and in Lua (refill in
redis/scripts.py: a refund, an unspent lease or credit given back on a shared store).
Generated package lists and amounts, through both, against a real redis-server."""
from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from hlrsmpp.accounts import Account, AccountBook, AccountSettings, Package
from hlrsmpp.redis import scripts

from redis_support import redis_server  # noqa: F401  (fixture)

REFILL = scripts.PRELUDE + r"""
refill(ARGV[1], ARGV[2], tonumber(ARGV[3]))
return redis.call('HGET', ARGV[1] .. 'acct:' .. ARGV[2], 'pk')
"""

# (credit, room above it): a package's size is never below its credit.
packages = st.lists(st.tuples(st.integers(0, 500), st.sampled_from([0, 0, 1, 7, 250])), min_size=1, max_size=5)
amounts = st.integers(1, 2_000)


def in_python(pk: list[tuple[int, int]], amount: int) -> list[tuple[int, int]]:
    acc = Account(AccountSettings(system_id="a", password="pw"),
                  [Package(credit, None, "", credit + room) for credit, room in pk])
    book = AccountBook([acc])
    book.refund(acc, amount)
    return [(p.credit, p.size) for p in acc.packages]


def in_lua(r, pk: list[tuple[int, int]], amount: int) -> list[tuple[int, int]]:
    r.hset("t:acct:a", "pk", json.dumps([{"c": str(c), "s": str(c + room), "b": "", "l": ""} for c, room in pk]))
    out = json.loads(r.eval(REFILL, 0, "t:", "a", amount))
    return [(int(p["c"]), int(p["s"])) for p in out]


def test_python_and_lua_refill_packages_alike(redis_server):  # noqa: F811
    r = redis_server.client()

    @settings(max_examples=300, deadline=None)
    @given(packages, amounts)
    def check(pk, amount):
        assert in_lua(r, pk, amount) == in_python(pk, amount)

    check()


def test_a_refund_beyond_what_was_drawn_keeps_the_record_loadable():
    # The newest package takes what exceeds every package's room; its size follows, or
    # the record would say size < credit and the account would not load again.
    acc = Account.from_config({"system_id": "a", "password": "pw", "packages": [
        {"credit": 5, "size": 10, "bought": "2026-01-01"}, {"credit": 10, "bought": "2026-02-01"}]})
    book = AccountBook([acc])
    book.refund(acc, 20 * 1_000_000)
    assert [(p.credit, p.size) for p in acc.packages] == [(10_000_000, 10_000_000), (25_000_000, 25_000_000)]
    assert Account.from_record(acc.to_record()).packages == acc.packages
