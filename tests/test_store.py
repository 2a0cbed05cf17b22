"""The SQLite store's receipt queue: a lookup's receipt is queued with its row, leaves the
queue when acknowledged or expired, reads give each lookup's receipt state as it is now,
and a database of the first schema upgrades with every unacknowledged receipt queued."""
from __future__ import annotations

import sqlite3

from hlrsmpp.accounts.store import EXPIRED, LOOKUP_COLUMNS, MIGRATIONS, PENDING_NONE, PENDING_RECEIPT, Store


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
