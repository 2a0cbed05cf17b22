"""The session rule: per account at most one receiving session (Rx or TRx, together) and
up to ``max_tx`` transmitters, across every process of a deployment. Written twice: in
Python (``storage.local.refuses``: the registry of a process alone on its store, and what
a shared registry refuses without asking Redis) and in Lua (``RX_CLAIM``, ``RX_RELEASE``
and ``TX_CLAIM`` in redis/scripts.py: the shared registry). Generated sequences of binds
and unbinds, spread over two processes of a shared deployment, through both, against a
real redis-server: every bind gets the same answer."""
from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings, strategies as st

from hlrsmpp.accounts import Account
from hlrsmpp.redis import RedisStore
from hlrsmpp.smpp.session import BindMode
from hlrsmpp.smpp.status import Status
from hlrsmpp.storage.local import LocalRegistry

from redis_support import redis_server  # noqa: F401  (fixture)

#: ("bind", account, mode, process, max_tx) or ("unbind", which earlier bind)
binds = st.tuples(st.just("bind"), st.integers(0, 2), st.sampled_from([BindMode.TX, BindMode.RX, BindMode.TRX]), st.integers(0, 1),
                  st.integers(0, 3))
unbinds = st.tuples(st.just("unbind"), st.integers(0, 30))
sequences = st.lists(st.one_of(binds, binds, unbinds), min_size=1, max_size=30)

_runs = itertools.count()


async def in_python(ops) -> list[bool]:
    registry = LocalRegistry()
    sessions: list[tuple[str, object]] = []
    answers = []
    for op in ops:
        if op[0] == "bind":
            _, a, mode, _, max_tx = op
            account = Account.from_config({"system_id": f"a{a}", "password": "pw", "max_tx": max_tx})
            proto = object()
            answers.append((await registry.claim(account, mode, proto)) == Status.ROK)
            sessions.append((account.system_id, proto))
        elif sessions:
            registry.release(*sessions[op[1] % len(sessions)])
    return answers


def in_lua(nodes: list[RedisStore], ops) -> list[bool]:
    run = next(_runs)  # fresh accounts for each sequence; the nodes stay alive
    sessions: list[tuple[RedisStore, str, str, object] | None] = []
    answers = []
    for k, op in enumerate(ops):
        if op[0] == "bind":
            _, a, mode, node, max_tx = op
            store, sid = nodes[node], f"r{run}a{a}"
            if mode & BindMode.RX:
                fence = store.rx_claim(sid)
                ok, session = fence > 0, (store, sid, "rx", store.rx_value(fence))
            else:
                member = f"{store.node}:{k}"
                ok, session = store.tx_claim(sid, member, max_tx), (store, sid, "tx", member)
            answers.append(ok)
            sessions.append(session if ok else None)  # a refused bind holds nothing to free
        elif sessions and (held := sessions[op[1] % len(sessions)]) is not None:
            store, sid, kind, value = held
            if kind == "rx":
                store.rx_release(sid, value)
            else:
                store.tx_release(sid, value)
    return answers


def test_python_and_lua_decide_binds_alike(redis_server):  # noqa: F811
    nodes = [RedisStore({"url": redis_server.url, "lease": 600.0}) for _ in range(2)]

    @settings(max_examples=300, deadline=None)
    @given(sequences)
    def check(ops):
        assert in_lua(nodes, ops) == asyncio.run(in_python(ops))

    try:
        check()
    finally:
        for store in nodes:
            store.close()


def test_the_rule_as_each_side_reads_it(redis_server):  # noqa: F811
    """The generated sequences above would agree on a rule both got wrong: the rule itself."""
    rx, trx, tx = ("bind", 0, BindMode.RX, 0, 2), ("bind", 0, BindMode.TRX, 1, 2), ("bind", 0, BindMode.TX, 1, 2)
    # An unbind of a session gone already frees nothing (the receiver is another's now);
    # a receiver does not count against max_tx.
    ops = [rx, trx, tx, tx, tx, ("unbind", 0), trx, rx, ("unbind", 0), rx, ("unbind", 2), tx,
           ("bind", 0, BindMode.TX, 0, 0), ("bind", 1, BindMode.TRX, 0, 0)]
    expected = [True, False, True, True, False, True, False, False, True, False, True]
    nodes = [RedisStore({"url": redis_server.url, "lease": 600.0}) for _ in range(2)]
    try:
        assert asyncio.run(in_python(ops)) == expected
        assert in_lua(nodes, ops) == expected
    finally:
        for store in nodes:
            store.close()
