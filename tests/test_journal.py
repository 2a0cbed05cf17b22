"""The group-commit journal on a real SQLite store: replies wait for durability,
a failed commit is reported to every reply of its batch, and the writer thread
carries on and stops cleanly."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from hlrsmpp.accounts.policy import AccountBook
from hlrsmpp.accounts.store import LOOKUP_COLUMNS, Store
from hlrsmpp.server.journal import Journal


def _row(lookup_id: int) -> tuple:
    values = dict.fromkeys(LOOKUP_COLUMNS, 0)
    values.update(id=lookup_id, batch_id=None, system_id="a", channel="smpp", msisdn="447700900123",
                  cc="44", nnc="23410", p_nnc="", r_cc="", r_nnc="", map_error=None, pending=1)
    return tuple(values[c] for c in LOOKUP_COLUMNS)


class RefusingStore(Store):
    """A store whose next ``refuse`` commits fail as a full disk would."""

    refuse = 0

    def commit(self, *args, **kwargs):
        if self.refuse:
            self.refuse -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return super().commit(*args, **kwargs)


def test_replies_run_after_their_rows_are_durable_and_a_failure_reaches_only_its_batch(tmp_path):
    store = RefusingStore(tmp_path / "data")
    outcomes: list[tuple[str, bool, bool]] = []

    async def main():
        journal = Journal(store, AccountBook(), asyncio.get_running_loop())
        journal.add_lookup(_row(1))
        journal.after_commit(lambda ok: outcomes.append(("first", ok, store.lookup(1) is not None)))
        await journal.drain()
        store.refuse = 1
        journal.add_lookup(_row(2))
        journal.after_commit(lambda ok: outcomes.append(("refused", ok, store.lookup(2) is not None)))
        # Added while that commit is in flight: the next commit, which succeeds.
        journal.add_lookup(_row(3))
        journal.after_commit(lambda ok: outcomes.append(("next", ok, store.lookup(3) is not None)))
        await journal.drain()
        journal.add_lookup(_row(4))
        journal.after_commit(lambda ok: outcomes.append(("after", ok, store.lookup(4) is not None)))
        await journal.drain()
        assert journal.failures == 1 and journal.commits == 4
        journal.close()
        assert not journal._writer.is_alive()

    asyncio.run(main())
    assert outcomes == [("first", True, True), ("refused", False, False), ("next", True, True),
                        ("after", True, True)]
    store.close()


def test_a_batch_fills_while_the_writer_is_busy(tmp_path):
    """What arrives during a commit goes into the next one, together."""
    store = Store(tmp_path / "data")
    gate = threading.Event()
    sizes: list[int] = []
    commit = store.commit

    def slow_commit(lookups, *rest):
        gate.wait(5)
        sizes.append(len(lookups))
        commit(lookups, *rest)

    store.commit = slow_commit

    async def main():
        journal = Journal(store, AccountBook(), asyncio.get_running_loop())
        journal.add_lookup(_row(1))
        journal.after_commit(lambda ok: None)   # the writer is idle: this commit starts now
        for k in range(2, 12):
            journal.add_lookup(_row(k))
            journal.after_commit(lambda ok: None)
        await asyncio.sleep(0.05)
        gate.set()
        await journal.drain()
        journal.close()

    asyncio.run(main())
    assert sizes == [1, 10]
    assert store.totals()["a"][0] == 11
    store.close()
