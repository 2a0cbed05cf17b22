"""History retention (``history.retention_days``): what is older is removed, in small
steps, off the hot path.

A background task wakes every ``INTERVAL`` seconds and, on a thread with a connection
of its own, deletes the oldest rows of each pruned table in steps of ``STEP`` rows (each
its own short transaction, by the table's time key: a lookup's id begins with its
millisecond) on a thread of lower priority, pausing after each step for 19 times as long
as it took: the group commit, which waits for the write lock while a step holds it, is
held up for a step at most, and the lookups keep their CPU. Lookups whose receipt is still
queued stay until it is acknowledged or expires. The ledger is never pruned.

The pages freed are reused by new lookups, so with a retention the file stops growing.
A store made by this version is ``auto_vacuum=INCREMENTAL``: once a round is done, the
free pages beyond a reserve (what the next hours would reuse) are given back to the file
system, ``VACUUM_STEP`` pages at a time. An older store keeps its size; docs/operations.md
says how to switch it once, offline.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import structlog

from ..ids import first_id_at, time_of_id

log = structlog.get_logger("hlrsmpp.retention")

#: Seconds between rounds.
INTERVAL = 60.0
#: Rows deleted per step (one short write transaction). After each step the pruning
#: pauses so that it takes at most DUTY of the time (of a core and of the write lock):
#: still some 150 million rows a day (measured on a busy 2-core machine).
STEP = 1000
DUTY = 0.05
#: Pages given back per incremental_vacuum step; free pages kept back, as a share of the file.
VACUUM_STEP = 2048
FREE_RESERVE = 0.02

#: The tables pruned by time: name -> (statement deleting at most ?2 rows older than the
#: key ?1, the kind of key: "id", a lookup id, or "day", the YYYY-MM-DD of a day in the
#: accounts' calendar, the days before it removed). A table of per-lookup history adds
#: its entry here.
PRUNED: dict[str, tuple[str, str]] = {
    "lookups": (
        "DELETE FROM lookups WHERE id IN (SELECT l.id FROM lookups l WHERE l.id < ?1 AND NOT EXISTS "
        "(SELECT 1 FROM receipt_queue q WHERE q.id = l.id) ORDER BY l.id LIMIT ?2)", "id"),
    # A text message's row beside its lookup's (same id), as long as the lookup's.
    "sms": (
        "DELETE FROM sms WHERE id IN (SELECT s.id FROM sms s WHERE s.id < ?1 AND NOT EXISTS "
        "(SELECT 1 FROM receipt_queue q WHERE q.id = s.id) ORDER BY s.id LIMIT ?2)", "id"),
    # Where each account's lookups are (accounts/spans.py): the spans wholly older.
    # Account by account (each a range of the primary key, the accounts found by skipping
    # from one to the next), not a scan of every span for their ends.
    "account_spans": (
        "WITH RECURSIVE accounts(a) AS (SELECT MIN(account) FROM account_spans UNION ALL "
        "SELECT (SELECT MIN(account) FROM account_spans WHERE account > a) FROM accounts WHERE a IS NOT NULL) "
        "DELETE FROM account_spans WHERE (account, lo) IN (SELECT s.account, s.lo FROM accounts "
        "JOIN account_spans s ON s.account = accounts.a AND s.lo < ?1 WHERE s.hi < ?1 LIMIT ?2)", "id"),
    # The per-day rollups (statistics), whole days.
    "rollup_sums": (
        "DELETE FROM rollup_sums WHERE (system_id, dim, value, day) IN (SELECT system_id, dim, value, "
        "day FROM rollup_sums WHERE day < ?1 LIMIT ?2)", "day"),
}


class Retention:
    """Prunes the store's history older than ``days`` (0: keeps everything, measures only)."""

    def __init__(self, file: Path, days: float, day_of: Callable[[float], str],
                 tables: dict[str, Any] | None = None, initializer: Callable[[], None] | None = None):
        self.file = Path(file)
        self.days = days
        self.day_of = day_of  # the YYYY-MM-DD of the day holding an instant
        self.tables = PRUNED if tables is None else tables
        self.pruned: dict[str, int] = {name: 0 for name in self.tables}  # metric: rows removed
        self.sizes: dict[str, int] = {}                                  # metric: bytes by kind
        self.oldest: float | None = None                                 # metric: the oldest lookup's time
        self.rounds = 0
        self._db: sqlite3.Connection | None = None
        # ``initializer``: e.g. a lower priority for the thread.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="hlrsmpp-retention", initializer=initializer)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._thread.submit(self._close).result()
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a busy or failing store: try again next round
                log.error("retention_failed", error=repr(err))
            await asyncio.sleep(INTERVAL)

    async def prune(self, now: float | None = None) -> int:
        """One round: every row older than the retention removed, step by step; then
        free pages beyond the reserve given back. Returns the rows removed."""
        loop = asyncio.get_running_loop()
        total = 0
        if self.days > 0:
            cutoff = (time.time() if now is None else now) - self.days * 86400
            keys = {"id": first_id_at(cutoff), "day": self.day_of(cutoff)}
            for name, (sql, kind) in self.tables.items():
                k = keys[kind]
                while True:
                    n, took = await loop.run_in_executor(self._thread, self._step, sql, k)
                    self.pruned[name] += n
                    total += n
                    if n < STEP:
                        break
                    await asyncio.sleep(took * (1 / DUTY - 1))
            while True:
                more, took = await loop.run_in_executor(self._thread, self._vacuum_step)
                if not more:
                    break
                await asyncio.sleep(took * (1 / DUTY - 1))
        await loop.run_in_executor(self._thread, self._measure)
        self.rounds += 1
        if total:
            log.info("history_pruned", rows=total, days=self.days)
        return total

    # ---------------------------------------------------------------- on the thread
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.file, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            self._db = db
        return self._db

    def _step(self, sql: str, key: Any) -> tuple[int, float]:
        """(rows deleted, seconds it took)."""
        t0 = time.perf_counter()
        db = self._conn()
        before = db.total_changes   # not rowcount: sqlite3 leaves it -1 for a WITH ... DELETE
        db.execute(sql, (key, STEP))
        return db.total_changes - before, time.perf_counter() - t0

    def _vacuum_step(self) -> tuple[bool, float]:
        """Give back up to VACUUM_STEP free pages beyond the reserve (auto_vacuum=INCREMENTAL
        stores only): (whether there may be more, seconds it took)."""
        t0 = time.perf_counter()
        db = self._conn()
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return False, 0.0
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        extra = free - int(db.execute("PRAGMA page_count").fetchone()[0] * FREE_RESERVE)
        if extra <= 0:
            return False, 0.0
        # executescript steps it to its end (execute would free one page only).
        db.executescript(f"PRAGMA incremental_vacuum({min(extra, VACUUM_STEP)})")
        return extra > VACUUM_STEP, time.perf_counter() - t0

    def _measure(self) -> None:
        db = self._conn()
        page = db.execute("PRAGMA page_size").fetchone()[0]
        wal = self.file.with_name(self.file.name + "-wal")
        self.sizes = {
            "file": self.file.stat().st_size,
            "wal": wal.stat().st_size if wal.exists() else 0,
            "free": db.execute("PRAGMA freelist_count").fetchone()[0] * page,
        }
        first = db.execute("SELECT MIN(id) FROM lookups").fetchone()[0]
        self.oldest = time_of_id(first) if first is not None else None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
