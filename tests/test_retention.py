"""History retention: lookups older than history.retention_days are removed (and nothing
else), in steps, by the server's background task, across a restart; the ledger and
lookups whose receipt is still queued stay; the freed pages go back to the file system.
Real server, real SQLite."""
from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from conftest import make_config
from hlrsmpp.accounts.store import Store, history_page, open_reader
from hlrsmpp.bench.prefill import prefill
from hlrsmpp.config import ConfigError
from hlrsmpp.domain import PENDING_NONE, PENDING_RECEIPT
from hlrsmpp.ids import first_id_at
from hlrsmpp.server import retention as retention_mod
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from hlrsmpp.server.retention import Retention
from test_store import _row

DAY = 86400


def _ids(db_file) -> set[int]:
    with sqlite3.connect(db_file) as db:
        return {i for (i,) in db.execute("SELECT id FROM lookups")}


def _prune(st, now: float) -> int:
    return asyncio.run_coroutine_threadsafe(st.server.retention.prune(now=now), st.loop).result(60)


def _wait_round(st) -> None:
    deadline = time.monotonic() + 30
    while st.server.retention.rounds < 1:
        assert time.monotonic() < deadline, "no retention round"
        time.sleep(0.05)


def test_retention_removes_exactly_what_is_older_across_a_restart(make_server, tmp_path, monkeypatch):
    monkeypatch.setattr(retention_mod, "STEP", 500)  # several steps per round
    data = tmp_path / "data"
    prefill(data, 6000, days=10, accounts=40)   # rare ones too: many spans of their own
    db_file = data / "hlrsmpp.sqlite3"
    everything = _ids(db_file)
    with sqlite3.connect(db_file) as db:
        db.execute("INSERT INTO ledger (system_id, at, kind, amount, note) VALUES ('acct001', ?, 'top_up', 5, 'old')",
                   (time.time() - 40 * DAY,))
        ledger = db.execute("SELECT * FROM ledger").fetchall()
        # The per-day rollups of those 10 days (prefill sums them as the server does):
        # whole days older than the retention go.
        days = {d for (d,) in db.execute("SELECT day FROM rollup_sums")}
        assert len(days) >= 10
        # Text messages beside some lookups, old and new: they go with their lookup.
        db.executemany("INSERT INTO sms VALUES (?, 1, 0, 1, 'src', 'hi', 2, 0)",
                       [(i,) for i in sorted(everything)[::50]])

    st = make_server(history={"retention_days": 6})
    _wait_round(st)  # the first round runs at start
    now = time.time()
    _prune(st, now)
    kept = {i for i in everything if i >= first_id_at(now - 6 * DAY)}
    assert 0 < len(kept) < len(everything)
    assert _ids(db_file) == kept
    assert st.server.retention.pruned["lookups"] == len(everything) - len(kept)
    first_day = time.strftime("%Y-%m-%d", time.gmtime(now - 6 * DAY))
    with sqlite3.connect(db_file) as db:
        assert {i for (i,) in db.execute("SELECT id FROM sms")} == kept & set(sorted(everything)[::50])
        assert {d for (d,) in db.execute("SELECT day FROM rollup_sums")} == {d for d in days if d >= first_day}
        # Where each account's lookups are: the spans wholly older go, the rest stay, and
        # each account's pages still hold exactly its lookups that are left.
        cut = first_id_at(now - 6 * DAY)
        spans = db.execute("SELECT account, lo, hi FROM account_spans").fetchall()
        assert spans and all(hi >= cut for _, _, hi in spans)
        assert st.server.retention.pruned["account_spans"] > 0
        reader = open_reader(db_file)
        for account in {a for a, _, _ in spans}:
            want = [i for (i,) in db.execute("SELECT id FROM lookups WHERE system_id = ? ORDER BY id", (account,))]
            assert [r["id"] for r in history_page(reader, account, limit=10_000)] == want
        reader.close()
    st.stop()

    st = make_server(history={"retention_days": 3})
    _wait_round(st)
    now = time.time()
    _prune(st, now)
    kept = {i for i in everything if i >= first_id_at(now - 3 * DAY)}
    assert _ids(db_file) == kept and kept
    with sqlite3.connect(db_file) as db:
        # The ledger is never pruned (the accounts of the file added their own entries).
        assert set(ledger) <= set(db.execute("SELECT * FROM ledger").fetchall())
        # A store made by this version gives the freed pages back.
        pages, free = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count"))
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert free <= pages * retention_mod.FREE_RESERVE + 1
    assert st.server.retention.sizes["file"] == db_file.stat().st_size


def test_retention_zero_keeps_everything(make_server, tmp_path):
    prefill(tmp_path / "data", 500, days=400, accounts=2)
    everything = _ids(tmp_path / "data" / "hlrsmpp.sqlite3")
    st = make_server()
    _wait_round(st)
    assert _prune(st, time.time()) == 0
    assert _ids(tmp_path / "data" / "hlrsmpp.sqlite3") == everything
    assert st.server.retention.oldest == pytest.approx(min(everything) / 2**22 / 1000 + 1577836800, abs=0.01)


async def test_a_lookup_whose_receipt_is_queued_stays_until_it_is_done(tmp_path):
    store = Store(tmp_path)
    old = first_id_at(time.time() - 10 * DAY)
    store.commit([_row(old + 1), _row(old + 2, "http", PENDING_NONE), _row(old + 3, pending=PENDING_RECEIPT)],
                 [(PENDING_NONE, old + 3)], [])
    recent = first_id_at(time.time())
    store.commit([_row(recent)], [], [])
    retention = Retention(store.file, days=1, day_of=lambda t: store.periods.span(t)[2])
    try:
        await retention.prune()
        assert _ids(store.file) == {old + 1, recent} and retention.pruned["lookups"] == 2
        store.commit([], [(PENDING_NONE, old + 1)], [])  # its receipt acknowledged
        await retention.prune()
        assert _ids(store.file) == {recent} and retention.pruned["lookups"] == 3
    finally:
        await retention.stop()
        store.close()


@pytest.mark.parametrize("value", [-1, "ten", True])
def test_retention_days_must_be_a_number_of_days(tmp_path, value):
    with pytest.raises(ConfigError, match="history.retention_days"):
        make_config(tmp_path, history={"retention_days": value})


def test_only_a_process_alone_on_its_file_prunes_the_history(make_server, redis_url):  # noqa: F811
    """Retention is the local deployment's (SQLite); a shared store expires its own history
    and the process runs none."""
    alone = make_server(history={"retention_days": 30})
    assert alone.server.retention is not None and alone.server.retention.days == 30
    shared = make_server(history={"retention_days": 30}, storage={"redis": {"url": redis_url}})
    assert shared.server.retention is None
