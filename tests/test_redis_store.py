"""RedisStore against the contract of the embedded SQLite Store, then what only a shared
store does: node numbers, fencing, credit leases (never more than the balance; a dead
process's unspent credit comes back), the session registry scripts, TTLs. A real
redis-server (tests/redis_support.py), no fakes.
"""
from __future__ import annotations

import json
import time
from datetime import date

import pytest

from hlrsmpp.accounts import Account, AccountBook, Package, Refusal
from hlrsmpp.accounts.store import Store
from hlrsmpp.domain import LOOKUP_COLUMNS
from hlrsmpp.config import ConfigError
from hlrsmpp.ids import IdGenerator
from hlrsmpp.redis import RedisStore
from hlrsmpp.redis.store import GROUP, Fenced, decode_batch

from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)

M = 1_000_000


def _rows(ids: IdGenerator, sid: str, n: int, t: float, channel="smpp", batch=None, cost=100_000):
    pending = 1 if channel == "smpp" else 0
    return [(ids.next(), batch, sid, channel, f"4479{k:08d}", t, t + 0.5, cost, 0 if k % 3 else 11,
             "44", "23415", k % 2, "23410" if k % 2 else "", 0, "", "", None if k % 3 else 27, pending)
            for k in range(n)]


def _deliver(store, sid: str) -> None:
    """What the receiving process's consumer does (cluster.py): read the account's stream and
    remember which entry each receipt came in, so acknowledgements reach the stream."""
    res = store._r.xreadgroup(GROUP, store.consumer, {f"{store.P}rcpt:{sid}": ">"}, count=1000)
    for _, entries in res or []:
        for eid, fields in entries:
            rows = decode_batch(fields[b"r"])
            store.batches[eid, 1] = {r[0] for r in rows}
            for r in rows:
                store.entries[r[0]] = (sid, eid, 1)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.e2e)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = Store(tmp_path / "data")
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisStore({"url": url})
        s.seed([{"system_id": sid, "password": "x"} for sid in ("a", "b")])
    yield s
    s.close()


# ------------------------------------------------------------------ the contract

def test_lookups_by_id_batch_and_history(store):
    node = getattr(store, "node", 0)
    ids = IdGenerator(node)
    t0 = time.time() - 5
    a = _rows(ids, "a", 40, t0)
    time.sleep(0.005)
    mid = time.time()  # history by time is by id: ids start with the millisecond they were issued
    time.sleep(0.005)
    b = _rows(ids, "b", 30, t0 + 1, channel="http", batch=4242)
    store.commit(a + b, [], [])
    for row in (a[0], a[17], b[5]):
        got = store.lookup(row[0])
        assert tuple(got) == row
        assert dict(got) == dict(zip(LOOKUP_COLUMNS, row))
        assert got["msisdn"] == row[4]
    assert store.lookup(123) is None
    assert [tuple(r) for r in store.batch(4242)] == b
    assert store.batch(1) == []
    assert [r["id"] for r in store.history("a")] == [r[0] for r in a]
    assert [r["id"] for r in store.history()] == sorted(r[0] for r in a + b)
    assert [r["id"] for r in store.history("a", limit=5, after_id=a[9][0])] == [r[0] for r in a[10:15]]
    assert [r["id"] for r in store.history(None, since=mid)] == [r[0] for r in b]
    assert [r["id"] for r in store.history(None, until=mid)] == [r[0] for r in a]
    # Newest first, paged below the cursor, within since/until.
    newest = sorted((r[0] for r in a + b), reverse=True)
    assert [r["id"] for r in store.history(newest_first=True)] == newest
    assert [r["id"] for r in store.history("a", newest_first=True)] == [r[0] for r in reversed(a)]
    assert [r["id"] for r in store.history(None, limit=5, after_id=newest[9], newest_first=True)] == newest[10:15]
    assert [r["id"] for r in store.history(None, since=mid, newest_first=True)] == [r[0] for r in reversed(b)]
    assert [r["id"] for r in store.history(None, until=mid, limit=3, newest_first=True)] == [
        r[0] for r in reversed(a)][:3]
    assert store.totals() == {"a": (40, 40 * 100_000), "b": (30, 30 * 100_000)}
    assert store.max_id() == max(r[0] for r in a + b)


def test_acknowledged_and_expired_receipts(store):
    ids = IdGenerator(getattr(store, "node", 0))
    rows = _rows(ids, "a", 10, time.time())
    store.commit(rows, [], [])
    if isinstance(store, RedisStore):
        _deliver(store, "a")
    store.commit([], [(0, r[0]) for r in rows[:6]] + [(2, rows[6][0])], [])
    assert [store.lookup(r[0])["pending"] for r in rows] == [0] * 6 + [2] + [1] * 3


@pytest.mark.parametrize("n", [1, 3, 5, 21, 85, 341])  # 341 = 256 + 64 + 16 + 4 + 1
def test_commits_of_any_size_keep_every_row_and_every_ack(store, n):
    """The SQLite store writes in multi-row chunks: no row, and no acknowledgement, is lost
    or misplaced at any chunk boundary."""
    ids = IdGenerator(getattr(store, "node", 0))
    rows = _rows(ids, "a", n, time.time())
    store.commit(rows, [], [])
    if isinstance(store, RedisStore):
        _deliver(store, "a")
    acks = [(0 if k % 7 else 2, r[0]) for k, r in enumerate(rows) if k % 5]
    store.commit([], acks, [])
    want = {lookup_id: pending for pending, lookup_id in acks}
    for row in rows:
        got = tuple(store.lookup(row[0]))
        assert got[:-1] == row[:-1]
        assert got[-1] == want.get(row[0], 1)
    assert store.totals()["a"] == (n, n * 100_000)


def test_ledger_and_account_records(store):
    now = time.time()
    rec = {"system_id": "a", "password": "x", "price": "0.1"}
    store.commit([], [], [("a", json.dumps(rec))], [("a", now, "top_up", 5 * M, "gift"),
                                                    ("a", now + 1, "refund", 3, "")])
    assert [tuple(r) for r in store.ledger("a")][-2:] == [(now, "top_up", 5 * M, "gift"), (now + 1, "refund", 3, "")]
    assert store.ledger("a")[-1]["kind"] == "refund"
    assert store.account_records()["a"]["price"] == "0.1"


# ------------------------------------------------------------- shared only

def test_node_numbers_are_unique_and_freed_on_leave(redis_url):
    stores = [RedisStore({"url": redis_url}) for _ in range(4)]
    assert len({s.node for s in stores}) == 4
    gone = stores.pop()
    gone.leave()
    stores.append(RedisStore({"url": redis_url}))
    assert len({s.node for s in stores}) == 4
    for s in stores:
        s.close()


def test_unreachable_redis_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="cannot reach"):
        RedisStore({"url": "redis://127.0.0.1:1/0"})
    with pytest.raises(ConfigError, match="unknown key"):
        RedisStore({"url": "redis://127.0.0.1:1/0", "leese": 3})


def test_a_process_whose_node_lease_is_lost_cannot_commit(redis_url):
    s = RedisStore({"url": redis_url})
    s.seed([{"system_id": "a", "password": "x"}])
    s.heartbeat([], [])
    s._r.delete(f"{s.P}node:{s.node}")  # as if it had paused past its lease
    with pytest.raises(Fenced):
        s.commit(_rows(IdGenerator(s.node), "a", 3, time.time()), [], [])
    assert s.fenced
    assert s.totals() == {}
    with pytest.raises(Fenced):
        s.heartbeat([], [])
    s.close()


def test_commit_marker_tells_whether_an_interrupted_commit_landed(redis_url):
    s = RedisStore({"url": redis_url})
    s.seed([{"system_id": "a", "password": "x"}])
    s.commit(_rows(IdGenerator(s.node), "a", 2, time.time()), [], [])
    assert s._applied(s.cseq)
    assert not s._applied(s.cseq + 1)
    s.close()


def test_credit_leases_never_exceed_the_balance_and_come_back(redis_url):
    a, b = RedisStore({"url": redis_url}), RedisStore({"url": redis_url})
    a.seed([{"system_id": "acme", "password": "x", "packages": [
        {"credit": "4", "bought": "2026-01-01", "label": "old"}, {"credit": "6", "bought": "2026-02-01"}]}])
    got_a, slices, free = a.reserve("acme", 7 * M)
    assert (got_a, free) == (7 * M, 3 * M)
    assert slices == [(4 * M, "2026-01-01", "old"), (3 * M, "2026-02-01", "")]  # oldest first
    got_b, _, free = b.reserve("acme", 7 * M)
    assert (got_b, free) == (3 * M, 0)
    assert b.reserve("acme", 1)[0] == 0
    # b spends 2 credits (20 lookups at 0.1), a spends 1.
    b.commit(_rows(IdGenerator(b.node), "acme", 20, time.time()), [], [])
    a.commit(_rows(IdGenerator(a.node), "acme", 10, time.time()), [], [])
    view = a.credit("acme")
    assert view == {"free": 0, "leased": {a.node: 6 * M, b.node: 1 * M}, "total": 7 * M}
    assert a.give_back("acme", 10 * M) == 6 * M  # never more than the lease holds unspent
    assert a.credit("acme")["free"] == 6 * M
    # b dies: after its node lease, any process gives its unspent credit back.
    b._r.delete(f"{b.P}node:{b.node}")
    assert a.reap() == [b.node]
    assert a.credit("acme") == {"free": 7 * M, "leased": {}, "total": 7 * M}  # a's lease: empty, gone
    assert sum(c for _, c in a.totals().values()) == 3 * M  # 10 + 3 - 3 spent = 7 left
    pk = json.loads(a._r.hget(f"{a.P}acct:acme", "pk"))
    assert [(p["c"], p["b"]) for p in pk] == [("1000000", "2026-01-01"), ("6000000", "2026-02-01")]
    a.leave()
    a.close()
    b.close()


def test_a_top_up_committed_by_a_process_is_its_lease_and_comes_back(redis_url):
    s = RedisStore({"url": redis_url})
    s.seed([Account.from_config({"system_id": "acme", "password": "x", "credit": "1"}).to_record()])
    s.commit([], [], [], [("acme", time.time(), "top_up", 5 * M, "july")])
    assert s.credit("acme") == {"free": 1 * M, "leased": {s.node: 5 * M}, "total": 6 * M}
    s.leave()
    pk = json.loads(s._r.hget(f"{s.P}acct:acme", "pk"))
    assert [(p["c"], p["l"]) for p in pk] == [("1000000", ""), ("5000000", "july")]
    s.close()


def test_counters_and_queue_come_back_with_each_commit(redis_url):
    a, b = RedisStore({"url": redis_url}), RedisStore({"url": redis_url})
    a.seed([{"system_id": "acme", "password": "x"}])
    seen = []
    a.on_commit = seen.extend
    b.commit(_rows(IdGenerator(b.node), "acme", 7, time.time()), [], [])
    a.commit(_rows(IdGenerator(a.node), "acme", 3, time.time()), [], [])
    (sid, keys, totals, mine, queued, count, cost), = seen
    assert (sid, totals, mine, queued, count, cost) == ("acme", (10, 10, 10), (3, 3, 3), 10, 3, 300_000)
    assert keys[0].startswith("d") and keys[1].startswith("w") and keys[2].startswith("m")
    a.close()
    b.close()


def test_rollups_are_queued_with_each_commit_and_folded_once_per_field(redis_url):
    from hlrsmpp.redis.scripts import ROLLUP_FOLD
    s = RedisStore({"url": redis_url})
    s.seed([{"system_id": "acme", "password": "x"}])
    ids, commits, rows = IdGenerator(s.node), ROLLUP_FOLD + 5, []
    for c in range(commits):
        batch = _rows(ids, "acme", 3 + c % 4, time.time())
        s.commit(batch, [], [])
        rows += batch
    day = s.periods.date(time.time()).isoformat()
    hashes = [k.decode() for k in s._r.scan_iter(f"{s.P}roll:acme:*")]
    # A commit queues its sums (one entry); every ROLLUP_FOLD of them are added at once.
    assert s._r.llen(f"{s.P}roll:acme") == commits - ROLLUP_FOLD
    assert sorted(hashes) == sorted(f"{s.P}roll:acme:{day}:{d}" for d in "dcns")
    expect: dict[str, dict] = {"day": {}, "country": {}, "network": {}, "status": {}}
    for r in rows:
        for by, value in (("day", day), ("country", r[9]), ("network", r[12] if r[11] else r[10]),
                          ("status", r[8])):
            n, cost = expect[by].get(value, (0, 0))
            expect[by][value] = (n + 1, cost + r[7])
    until = date.fromordinal(date.fromisoformat(day).toordinal() + 1).isoformat()
    for _ in range(2):  # the first read folds what was queued; the second finds the same
        for by, sums in expect.items():
            assert s.rollups("acme", day, until, by) == sorted((v, n, c) for v, (n, c) in sums.items()), by
        assert s._r.llen(f"{s.P}roll:acme") == 0
    s.close()


def test_the_committing_process_reads_its_own_receipts_as_it_wrote_them(redis_url):
    a, b = RedisStore({"url": redis_url}), RedisStore({"url": redis_url})
    a.seed([{"system_id": s, "password": "x"} for s in ("acme", "other")])
    a.reading = lambda sid: sid == "acme"   # a's receiver reads acme's stream, not other's
    ids = IdGenerator(a.node)
    rows = _rows(ids, "acme", 5, time.time())
    a.commit(rows + _rows(ids, "other", 3, time.time()), [], [])
    assert list(a.written) == [("acme", a.cseq)]
    (_, entries), = a._r.xreadgroup(GROUP, a.consumer, {f"{a.P}rcpt:acme": ">"})
    (_, fields), = entries
    # Another process (its receiver took the account over) decodes the entry ...
    assert [tuple(r) for r in b.taken("acme", fields)] == rows
    # ... the one that wrote it takes its own rows, once.
    assert a.taken("acme", fields) == rows and a.written == {}
    assert [tuple(r) for r in a.taken("acme", fields)] == rows
    a.close()
    b.close()


def test_session_registry_scripts(redis_url):
    a, b = RedisStore({"url": redis_url, "lease": 1.0}), RedisStore({"url": redis_url, "lease": 1.0})
    f1 = a.rx_claim("acme")
    assert f1 > 0 and b.rx_claim("acme") == 0
    b.rx_release("acme", b.rx_value(f1))  # not b's: nothing happens
    assert b.rx_claim("acme") == 0
    a.rx_release("acme", a.rx_value(f1))
    f2 = b.rx_claim("acme")
    assert f2 > f1  # fencing tokens only grow
    assert a.heartbeat([("acme", a.rx_value(f1))], []) == ["acme"]  # a learns it is not the holder
    assert b.heartbeat([("acme", b.rx_value(f2))], []) == []
    assert a.tx_claim("acme", "a:1", 2) and b.tx_claim("acme", "b:1", 2)
    assert not a.tx_claim("acme", "a:2", 2)
    b.tx_release("acme", "b:1")
    assert a.tx_claim("acme", "a:2", 2)
    # A dead holder's receiver lease ends by itself; transmitters too (the nodes live on).
    for _ in range(3):
        time.sleep(0.4)
        a.heartbeat([], [])
        b.heartbeat([], [])
    assert a.rx_claim("acme") > f2
    assert b.tx_claim("acme", "b:2", 2)
    a.close()
    b.close()


def test_history_is_kept_for_history_ttl(redis_url):
    s = RedisStore({"url": redis_url, "history_ttl": 1})
    s.seed([{"system_id": "a", "password": "x"}])
    rows = _rows(IdGenerator(s.node), "a", 5, time.time())
    s.commit(rows, [], [])
    assert len(s.history("a")) == 5
    time.sleep(2.1)
    assert s.lookup(rows[0][0]) is None and s.history("a") == []
    assert s.trim_history(time.time()) == 5
    assert s.totals() == {"a": (5, 500_000)}  # audits outlive the history
    s.close()


def test_receipts_past_their_ttl_leave_the_stream(redis_url):
    s = RedisStore({"url": redis_url})
    s.seed([{"system_id": "a", "password": "x"}])
    rows = _rows(IdGenerator(s.node), "a", 4, time.time())
    s.commit(rows, [], [])
    _deliver(s, "a")
    s.commit([], [(0, rows[0][0])], [])
    assert s.queued("a") == 3
    assert s.expire_receipts("a", time.time() + 1) == 3
    assert s.queued("a") == 0 and s._r.xlen(f"{s.P}rcpt:a") == 0
    assert [s.lookup(r[0])["pending"] for r in rows] == [0, 2, 2, 2]
    s.close()


# ------------------------------------------------- AccountBook seams for leases

def test_accountbook_leases_grant_withdraw_and_elsewhere():
    book = AccountBook()
    acc = book.add(Account.from_config({"system_id": "x", "password": "p", "packages": [], "price": 1,
                                        "low_credit": 5}))
    alerts, wanted = [], []
    book.on_low_credit = alerts.append
    book.on_no_credit = wanted.append
    now = time.time()
    assert book.admit(acc, "44", now) is Refusal.NO_CREDIT and wanted == [acc]
    book.grant(acc, [Package(2 * M, date(2026, 1, 1), "a"), Package(1 * M, None, "")])
    book.grant(acc, [Package(1 * M, date(2026, 1, 1), "a")])   # joins the same package
    assert [(p.credit, p.label) for p in acc.packages] == [(1 * M, ""), (3 * M, "a")]
    acc.usage.elsewhere = 100 * M   # the rest of the deployment holds plenty: no low-credit alert
    assert book.admit(acc, "44", now) is None and acc.credit == 103 * M and alerts == []
    assert book.withdraw(acc, 10 * M) == 3 * M and acc.usage.credit == 0
    book.count_elsewhere(acc, 5, 6, 7, now)
    assert (acc.usage.n_day, acc.usage.n_week, acc.usage.n_month) == (6, 7, 8)
