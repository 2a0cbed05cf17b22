"""The group-commit journal on a real SQLite store, with each of its writers (the C
committer's own thread, and the Python writer thread that Redis and the Python build
use): replies wait for durability, a batch SQLite refuses fails alone, what arrives
during a commit goes into the next, and closing commits what was handed over."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from hlrsmpp.accounts import AccountBook
from hlrsmpp.accounts.store import COMMIT_IN_C, Store
from hlrsmpp.domain import LOOKUP_COLUMNS
from hlrsmpp.server.journal import Journal

WRITERS = ["c", "python"] if COMMIT_IN_C else ["python"]


def _row(lookup_id: int) -> tuple:
    values = dict.fromkeys(LOOKUP_COLUMNS, 0)
    values.update(id=lookup_id, batch_id=None, system_id="a", channel="smpp", msisdn="447700900123",
                  cc="44", nnc="23410", p_nnc="", r_cc="", r_nnc="", map_error=None, pending=1)
    return tuple(values[c] for c in LOOKUP_COLUMNS)


@pytest.fixture(params=WRITERS)
def store(request, tmp_path):
    s = Store(tmp_path / "data")
    if request.param == "python":
        s.committer.close() if s.committer is not None else None
        s.committer = None
    yield s
    s.close()


def _ids(store: Store) -> list[int]:
    db = sqlite3.connect(store.file)
    try:
        return [r[0] for r in db.execute("SELECT id FROM lookups ORDER BY id")]
    finally:
        db.close()


def _batch(journal: Journal, ids: list[int], outcomes: list, name: str, store: Store) -> None:
    for i in ids:
        journal.add_lookup(_row(i))
    journal.after_commit(lambda ok: outcomes.append((name, ok, [store.lookup(i) is not None for i in ids])))


def test_replies_run_after_their_rows_are_durable_and_a_refused_batch_fails_alone(store):
    outcomes: list = []

    async def main():
        journal = Journal(store, AccountBook(), asyncio.get_running_loop())
        _batch(journal, [1], outcomes, "first", store)
        await journal.drain()
        # Lookup 1 again: SQLite refuses the batch, and lookup 2 with it.
        _batch(journal, [2, 1], outcomes, "refused", store)
        await asyncio.sleep(0)   # a turn later: the next batch, merged or not with it
        _batch(journal, [3], outcomes, "next", store)
        await journal.drain()
        _batch(journal, [4], outcomes, "after", store)
        await journal.drain()
        assert journal.failures == 1 and journal.commits == 4
        journal.close()

    asyncio.run(main())
    assert outcomes == [("first", True, [True]), ("refused", False, [False, True]), ("next", True, [True]),
                        ("after", True, [True])]
    assert _ids(store) == [1, 3, 4]


def test_a_batch_fills_while_the_writer_is_busy(store):
    """What arrives during a commit goes into the next one, together."""
    outcomes: list = []

    async def main():
        journal = Journal(store, AccountBook(), asyncio.get_running_loop())
        blocker = sqlite3.connect(store.file, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")   # the writer's first commit waits for this lock
        _batch(journal, [1], outcomes, "alone", store)   # the writer is idle: this commit starts now
        await asyncio.sleep(0.05)   # and waits for the lock
        for k in range(2, 12):
            _batch(journal, [k], outcomes, "together", store)
        await asyncio.sleep(0.1)
        assert outcomes == []
        blocker.execute("COMMIT")
        await journal.drain()
        assert journal.commits == 2 and journal.failures == 0
        journal.close()
        blocker.close()

    asyncio.run(main())
    assert [o[:2] for o in outcomes] == [("alone", True)] + [("together", True)] * 10
    assert all(o[2] == [True] for o in outcomes)
    assert _ids(store) == list(range(1, 12))


@pytest.mark.skipif(not COMMIT_IN_C, reason="_sqlite_batch not built (HLRSMPP_PURE_PYTHON)")
def test_the_c_committer_merges_the_batches_queued_during_a_transaction(tmp_path):
    store = Store(tmp_path / "data")
    outcomes: list = []

    async def main():
        journal = Journal(store, AccountBook(), asyncio.get_running_loop())
        blocker = sqlite3.connect(store.file, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        _batch(journal, [1], outcomes, "first", store)
        await asyncio.sleep(0.05)   # the committer has taken it: it waits for the lock
        for turn in range(3):   # three turns of the loop, three batches handed over
            await asyncio.sleep(0)
            _batch(journal, [10 * turn + 10, 10 * turn + 11], outcomes, f"turn {turn}", store)
        await asyncio.sleep(0.05)
        blocker.execute("COMMIT")
        await journal.drain()
        assert journal.commits == 2   # the first, then the three queued behind it as one
        journal.close()
        blocker.close()

    asyncio.run(main())
    assert [o[:2] for o in outcomes] == [("first", True)] + [(f"turn {t}", True) for t in range(3)]
    assert _ids(store) == [1, 10, 11, 20, 21, 30, 31]
    store.close()


def test_closing_commits_what_was_handed_over(store):
    outcomes: list = []

    async def main():
        journal = Journal(store, AccountBook(), asyncio.get_running_loop())
        _batch(journal, [1, 2], outcomes, "last", store)
        journal.close()

    asyncio.run(main())
    store.close()
    assert _ids(store) == [1, 2]


def test_a_value_sqlite_cannot_hold_fails_its_batch_only(store):
    outcomes: list = []

    async def main():
        journal = Journal(store, AccountBook(), asyncio.get_running_loop())
        journal.add_lookup(_row(1)[:-1] + (object(),))
        journal.after_commit(lambda ok: outcomes.append(("bad", ok)))
        await journal.drain()
        _batch(journal, [2], outcomes, "good", store)
        await journal.drain()
        journal.close()

    asyncio.run(main())
    assert outcomes == [("bad", False), ("good", True, [True])]
    assert _ids(store) == [2]
