"""The SQLite store's receipt queue: a lookup's receipt is queued with its row, leaves the
queue when acknowledged or expired, reads give each lookup's receipt state as it is now,
and a database of the first schema upgrades with every unacknowledged receipt queued."""
from __future__ import annotations

import sqlite3

from hlrsmpp.accounts.store import MIGRATIONS, Store
from hlrsmpp.domain import EXPIRED, LOOKUP_COLUMNS, PENDING_NONE, PENDING_RECEIPT


def _row(lookup_id: int, channel: str = "smpp", pending: int = PENDING_RECEIPT) -> tuple:
    values = dict.fromkeys(LOOKUP_COLUMNS, 0)
    values.update(id=lookup_id, batch_id=None, system_id="a", channel=channel, msisdn=f"4477009{lookup_id:05d}",
                  cc="44", nnc="23410", p_nnc="", r_cc="", r_nnc="", map_error=None, pending=pending)
    return tuple(values[c] for c in LOOKUP_COLUMNS)


def _queued(store: Store) -> list[int]:
    return [row["id"] for row in store.pending_receipts()]


def _pending(store: Store, ids) -> dict[int, int]:
    return {i: store.lookup(i)["pending"] for i in ids}


def test_receipts_are_queued_with_their_lookup_and_leave_when_done(tmp_path):
    store = Store(tmp_path)
    # 300 lookups: more than one chunk of every statement size; an HTTP lookup has no receipt.
    store.commit([_row(i) for i in range(1, 301)] + [_row(301, "http", PENDING_NONE)], [], [])
    assert _queued(store) == list(range(1, 301))
    store.commit([_row(302)], [(PENDING_NONE, i) for i in range(2, 300)] + [(EXPIRED, 300)], [])
    assert _queued(store) == [1, 302]
    rows = [store.lookup(i) for i in (1, 2, 300, 301)]
    assert [tuple(r) == _row(r["id"], r["channel"], r["pending"]) for r in rows] == [True] * 4
    # Still owed, acknowledged, dropped, none: in every read of the history.
    assert _pending(store, (1, 2, 300, 301)) == {1: 1, 2: 0, 300: EXPIRED, 301: 0}
    assert [r["pending"] for r in store.history("a", limit=3)] == [1, 0, 0]
    # An acknowledgement of what is not queued (twice, or after a restart) changes nothing.
    store.commit([], [(PENDING_NONE, 2), (PENDING_NONE, 999)], [])
    assert _queued(store) == [1, 302]
    store.close()
    assert _queued(Store(tmp_path)) == [1, 302]  # durable: a new process reads the same queue


def test_a_first_schema_database_upgrades_with_its_receipts_queued(tmp_path):
    path = tmp_path / "hlrsmpp.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
    old = [_row(1), _row(2, pending=PENDING_NONE), _row(3, "http", PENDING_NONE), _row(4, pending=EXPIRED),
           _row(5)]  # unacknowledged, acknowledged, no receipt, expired, unacknowledged
    db.executemany(f"INSERT INTO lookups ({', '.join(LOOKUP_COLUMNS)}) VALUES "
                   f"({', '.join('?' * len(LOOKUP_COLUMNS))})", old)
    db.close()
    store = Store(tmp_path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert _queued(store) == [1, 5]
    assert _pending(store, range(1, 6)) == {1: 1, 2: 0, 3: 0, 4: EXPIRED, 5: 1}
    indexes = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "lookups_pending" not in indexes
    store.commit([_row(6)], [(PENDING_NONE, 1)], [])
    assert _queued(store) == [5, 6]
    assert _pending(store, (1, 5, 6)) == {1: 0, 5: 1, 6: 1}


# ------------------------------------------- the commit in C (_sqlite_batch.c)

import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from hlrsmpp.accounts import store as store_module  # noqa: E402

needs_batch = pytest.mark.skipif(not store_module.COMMIT_IN_C, reason="_sqlite_batch not built (HLRSMPP_PURE_PYTHON)")


def _dump(store: Store) -> dict[str, list]:
    """Every table, every value with its SQLite type."""
    db = sqlite3.connect(store.file)
    out = {}
    for table, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type='table' ORDER BY name"):
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        exprs = ", ".join(f"{c}, typeof({c})" for c in cols)
        order = ", ".join(cols) if "WITHOUT ROWID" in sql else "rowid"
        out[table] = db.execute(f"SELECT {exprs} FROM {table} ORDER BY {order}").fetchall()
    return out


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
ROWS = st.lists(st.tuples(st.integers(1, (1 << 63) - 1), st.one_of(st.none(), st.integers(-(1 << 63), (1 << 63) - 1)),
                          TEXT, st.sampled_from(["smpp", "http"]), TEXT, st.floats(allow_nan=False), st.floats(0, 2e9),
                          st.integers(0, 10**12), st.integers(0, 255), TEXT, TEXT, st.integers(0, 1), TEXT,
                          st.integers(0, 1), TEXT, TEXT, st.one_of(st.none(), st.integers(0, 255)),
                          st.sampled_from([PENDING_NONE, PENDING_RECEIPT])),
                unique_by=lambda r: r[0], max_size=300)


def test_the_c_commit_is_built_unless_turned_off():
    # setup.py builds it on every install (make test does one); optional=True only so that
    # a machine without a compiler or libsqlite3-dev still runs the server.
    from hlrsmpp import native
    assert store_module.COMMIT_IN_C != native.PURE_PYTHON


@pytest.mark.slow
@needs_batch
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(ROWS, st.data())
def test_the_c_commit_writes_what_the_sqlite3_module_writes(tmp_path_factory, rows, data):
    acks = [(data.draw(st.sampled_from([PENDING_NONE, EXPIRED])), r[0]) for r in rows if data.draw(st.booleans())]
    accounts = data.draw(st.lists(st.tuples(TEXT, TEXT), max_size=3, unique_by=lambda a: a[0]))
    ledger = data.draw(st.lists(st.tuples(TEXT, st.floats(0, 2e9), TEXT, st.integers(-10**12, 10**12), TEXT),
                                max_size=3))
    stores = [Store(tmp_path_factory.mktemp("c")), Store(tmp_path_factory.mktemp("py"))]
    stores[1].committer.close()
    stores[1].committer = None  # the sqlite3 module's way
    for s in stores:
        s.commit(rows, [], accounts)
        s.commit([], acks, [], ledger)
    want, got = _dump(stores[1]), _dump(stores[0])
    for table in ("accounts", "ledger"):  # written at time.time(): equal but for the clock
        want[table] = [r[:4] for r in want[table]]
        got[table] = [r[:4] for r in got[table]]
    assert got == want


@needs_batch
def test_a_failing_c_commit_writes_nothing_and_the_next_one_works(tmp_path):
    store = Store(tmp_path)
    store.commit([_row(1)], [], [])
    with pytest.raises(sqlite3.Error):  # id 1 again: the whole transaction goes
        store.commit([_row(2), _row(1)], [(PENDING_NONE, 1)], [("a", "{}")])
    assert _queued(store) == [1] and store.lookup(2) is None
    with pytest.raises(TypeError):  # a value SQLite cannot hold: refused before anything runs
        store.commit([_row(3)[:-1] + (object(),)], [], [])
    with pytest.raises(OverflowError):
        store.commit([(1 << 63,) + _row(4)[1:]], [], [])
    store.commit([_row(2)], [(PENDING_NONE, 1)], [])
    assert _queued(store) == [2]
    store.close()
    with pytest.raises(sqlite3.Error):
        store.committer.transaction([])
