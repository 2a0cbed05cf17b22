"""The embedded store: SQLite (WAL) under ``storage.path``.

``lookups`` is at once the lookup history, the batch report
(/websmpp/hlr/report) and the query_sm source; ``receipt_queue`` holds the ids of the lookups
whose receipt the ESME has not acknowledged yet (the durable receipt queue). A
lookup's row and queue entry are written, with the account's new credit, in the
same transaction before its submit_sm_resp leaves (group commit); the entry is
deleted when the ESME acknowledges the receipt. The history row is not
rewritten for that: an acknowledgement deletes one tiny row instead of updating
a wide one and a partial index (−14 % of SQLite's cost per lookup,
bench/sqlite_commit.py); reads give ``pending`` as the receipt's state now.
Writes come from one thread (the C committer's, or the journal's Python writer);
reads use their own connection (WAL lets them run beside the writer).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import structlog

from ..domain import (LOOKUP_COLUMNS, PENDING_NONE, PENDING_RECEIPT, ROLLUP_DIMENSIONS, RollupKey,
                      rollup_dimensions, sum_rollup_rows)
from .calendar import Calendar
from . import spans as account_spans
from ..ids import first_id_at, time_of_id
from ..native import load as load_native

# The group commit in C (hlrsmpp.native); without it the sqlite3 module runs the same statements.
_native = load_native("hlrsmpp.accounts._sqlite_batch")
_Committer = getattr(_native, "Committer", None)
#: Whether a group commit runs in C (for hlrsmpp_build_info and the start-up log).
COMMIT_IN_C = _Committer is not None
log = structlog.get_logger("hlrsmpp.store")

MIGRATIONS = [
    # 1: initial schema
    """
    CREATE TABLE accounts (
        system_id TEXT PRIMARY KEY,
        record    TEXT NOT NULL,
        updated   REAL NOT NULL
    );
    CREATE TABLE lookups (
        id        INTEGER PRIMARY KEY,
        batch_id  INTEGER,
        system_id TEXT NOT NULL,
        channel   TEXT NOT NULL,
        msisdn    TEXT NOT NULL,
        submitted REAL NOT NULL,
        done      REAL NOT NULL,
        cost      INTEGER NOT NULL,
        err       INTEGER NOT NULL,
        cc        TEXT NOT NULL,
        nnc       TEXT NOT NULL,
        ported    INTEGER NOT NULL,
        p_nnc     TEXT NOT NULL,
        roaming   INTEGER NOT NULL,
        r_cc      TEXT NOT NULL,
        r_nnc     TEXT NOT NULL,
        map_error INTEGER,
        pending   INTEGER NOT NULL
    );
    -- history by time is an id range: ids start with their millisecond
    CREATE INDEX lookups_batch ON lookups (batch_id) WHERE batch_id IS NOT NULL;
    CREATE INDEX lookups_pending ON lookups (system_id, id) WHERE pending = 1;
    CREATE TABLE ledger (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        system_id TEXT NOT NULL,
        at        REAL NOT NULL,
        kind      TEXT NOT NULL,
        amount    INTEGER NOT NULL,
        note      TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX ledger_account ON ledger (system_id, at);
    """,
    # 2: the receipt queue in a table of its own (an acknowledgement no longer updates the row)
    """
    CREATE TABLE receipt_queue (id INTEGER PRIMARY KEY);
    INSERT INTO receipt_queue (id) SELECT id FROM lookups WHERE pending = 1;
    DROP INDEX lookups_pending;
    """,
    # 3: temporary IP bans survive a restart
    """
    CREATE TABLE bans (ip TEXT PRIMARY KEY, until REAL NOT NULL);
    """,
    # 4: a top-up's Idempotency-Key (with a digest of its request and its answer) kept in
    # its ledger entry, so a retry is answered, not applied twice; a row the health check
    # rewrites to see that the store still commits
    """
    ALTER TABLE ledger ADD COLUMN idem_key TEXT;
    ALTER TABLE ledger ADD COLUMN idem_request TEXT;
    ALTER TABLE ledger ADD COLUMN idem_answer TEXT;
    CREATE UNIQUE INDEX ledger_idem ON ledger (system_id, idem_key) WHERE idem_key IS NOT NULL;
    CREATE TABLE health (id INTEGER PRIMARY KEY, at REAL NOT NULL);
    """,
    # 5: text messages (SMS accounts): what a message is beside its lookups row (same id),
    # its state as cancel_sm and replace_sm leave it, and when it is final
    """
    CREATE TABLE sms (
        id          INTEGER PRIMARY KEY,
        segments    INTEGER NOT NULL,
        data_coding INTEGER NOT NULL,
        registered_delivery INTEGER NOT NULL,
        source_addr TEXT NOT NULL,
        text        TEXT NOT NULL,
        state       INTEGER NOT NULL,
        done        REAL NOT NULL
    );
    """,
    # 6: per-day rollups, kept by every group commit (never read from the history):
    # rollups per (account, day, country, network, err), rollup_sums the same summed per
    # one dimension (d: the day, c: country, n: network, s: err), what statistics read (a
    # year by network: ~30,000 rows, not ~300,000); tables of their own, pruned by day
    """
    CREATE TABLE rollups (
        system_id TEXT NOT NULL,
        day       TEXT NOT NULL,
        cc        TEXT NOT NULL,
        network   TEXT NOT NULL,
        err       INTEGER NOT NULL,
        count     INTEGER NOT NULL,
        cost      INTEGER NOT NULL,
        PRIMARY KEY (system_id, day, cc, network, err)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_sums (
        system_id TEXT NOT NULL,
        dim       TEXT NOT NULL,
        value     TEXT NOT NULL,
        day       TEXT NOT NULL,
        count     INTEGER NOT NULL,
        cost      INTEGER NOT NULL,
        PRIMARY KEY (system_id, dim, value, day)
    ) WITHOUT ROWID;
    """,
    # 7: an account's history pages read its own rows only, however few among millions
    # (about 33 bytes a lookup; building it on an existing store reads the whole history
    # once, at start-up)
    """
    CREATE INDEX IF NOT EXISTS lookups_account ON lookups (system_id, id);
    """,
    # 8: the outbox of account notifications (server/notify.py): one row per event, its
    # key unique per account (once per crossing), the channels still to send
    """
    CREATE TABLE notifications (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        system_id TEXT NOT NULL,
        kind      TEXT NOT NULL,
        key       TEXT NOT NULL,
        at        REAL NOT NULL,
        data      TEXT NOT NULL,
        pending   TEXT NOT NULL,
        sent      TEXT NOT NULL DEFAULT '',
        attempts  INTEGER NOT NULL DEFAULT 0,
        next_at   REAL NOT NULL,
        error     TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX notifications_key ON notifications (system_id, key);
    CREATE INDEX notifications_due ON notifications (next_at) WHERE pending != '';
    """,
    # 9: the per-day rollups are summed from the history a second at a time, beside the
    # group commit rather than in it (Store.steps): rollup_mark is the last lookup id
    # they hold, so whatever follows it is still to sum, after a crash as well. Until now
    # every commit summed its own lookups: everything there is, is summed. The full-key
    # table goes: nothing read it.
    """
    CREATE TABLE rollup_mark (
        one  INTEGER PRIMARY KEY CHECK (one = 1),
        mark INTEGER NOT NULL
    );
    INSERT INTO rollup_mark (one, mark) SELECT 1, COALESCE(MAX(id), 0) FROM lookups;
    DROP TABLE rollups;
    """,
    # 10: a claim of the sums kept in memory moves the mark only if the history holds just
    # the lookups they sum (pending: the claim's end while it is checked, see Store.steps)
    """
    ALTER TABLE rollup_mark ADD COLUMN pending INTEGER;
    """,
    # 11: an account's lookups found by spans of ids, one row per group commit and account
    # (accounts/spans.py), not an index entry per lookup; the spans of the history already
    # there are written at the first start (Store.__init__)
    account_spans.SCHEMA + """
    DROP INDEX IF EXISTS lookups_account;
    """,
]


class Store:
    """SQLite persistence. Group commits go to ``committer`` (C) or ``commit`` (the
    journal's writer thread); the rest runs anywhere."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL", tz: str = "UTC"):
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.file = self.dir / "hlrsmpp.sqlite3"
        _private(self.dir, self.file)
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"storage.synchronous: {synchronous!r} is not OFF, NORMAL, FULL or EXTRA")
        if self.file.stat().st_size == 0:
            # A new store gives back the pages that history retention frees (this must
            # come before anything else is written; an older store keeps its mode).
            sqlite3.connect(self.file).execute("PRAGMA auto_vacuum=INCREMENTAL").connection.close()
        self._writer = self._connect()
        self._migrate(self._writer)
        account_spans.catch_up(self._writer)
        self._spans = account_spans.AccountSpans()
        self._local = threading.local()
        # The group commit's own connection and thread, in C when built (_sqlite_batch.c:
        # the journal submits to it); else the statements go through self._writer on the
        # journal's Python thread. Either way the same statements, in order.
        self.committer = _Committer(str(self.file), [f"PRAGMA synchronous={self.synchronous}",
                                                     "PRAGMA busy_timeout=5000"],
                                    _STATEMENTS) if _Committer else None
        #: Idempotency-Keys another process took first: none, this process is alone here.
        self.duplicates: set[tuple[str, str]] = set()
        #: The days of the rollups, in the accounts' timezone.
        self.periods = Calendar(tz)
        self.outbox = Outbox(self)
        #: None: this process alone has its text messages (the sms table, written by the
        #: group commit, read with ``sms``); a shared store's are read and changed there.
        self.messages = None
        # The per-day rollups, once a server writes here (on_due): the group commit's steps
        # add each lookup to sums in memory (``_tally``: day -> {(system_id, cc, network,
        # err): [count, cost]}) since the mark ``_tally_from``, and once a second claim them
        # (``_claim_tally``); the rollups' thread follows the mark and, when a claim did not
        # take (a commit failed) or at start-up (a crash), sums that range from the history
        # instead (``rollups_due``), ready for the next commit (``_rollups_ready``).
        self._tally: dict[str, dict] = {}
        self._tally_from: int | None = None
        self._tally_last = self._tally_count = 0
        self._day: tuple[str, int] = ("", 0)  # the current day's name and the first id after it
        self._day_sums: dict = {}
        self._claim: tuple[int, int, float] | None = None  # (from, to, when) until the mark says
        self._claimed_at = 0.0
        self._mark: int | None = None   # the mark as the rollups' thread last read it
        self._rollups_ready: list[tuple[str, list]] | None = None
        self._summer: threading.Thread | None = None
        self._closing = threading.Event()
        self._wake: Callable[[], object] | None = None

    @property
    def auto_vacuum(self) -> str:
        """none, full or incremental (a store made by this version: incremental)."""
        mode = self._reader().execute("PRAGMA auto_vacuum").fetchone()[0]
        return ("none", "full", "incremental")[mode]

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.file, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = open_reader(self.file, self.synchronous)
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    # ------------------------------------------------------------- writes
    def commit(self, lookups: list[tuple], acks: list[tuple], accounts: list[tuple[str, str]],
               ledger: Sequence[tuple] = (), bans: Sequence[tuple[str, float]] = (), probe: bool = False,
               sms: Sequence[tuple] = ()) -> None:
        """One group commit, now, in this thread (see ``steps``)."""
        self.transaction(self.steps(lookups, acks, accounts, ledger, bans, probe, sms))

    def transaction(self, steps: list[tuple[str, list]]) -> None:
        """Runs (sql, params) steps in one transaction, now, in this thread."""
        if self.committer is not None:
            self.committer.transaction(steps)  # in C, the GIL released throughout
            return
        db = self._writer
        db.execute("BEGIN IMMEDIATE")  # the write lock first: a busy one is waited for
        try:
            for sql, params in steps:
                db.execute(sql, [v for item in params for v in (item if item.__class__ is tuple else (item,))])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def steps(self, lookups: list[tuple], acks: list[tuple], accounts: list[tuple[str, str]],
              ledger: Sequence[tuple] = (), bans: Sequence[tuple[str, float]] = (),
              probe: bool = False, sms: Sequence[tuple] = ()) -> list[tuple[str, list]]:
        """The statements of one group commit, as (sql, params) steps: new lookups (their
        receipts queued), the per-day rollups' sums when due (``rollups_due``), receipts done (``acks``:
        (PENDING_NONE when acknowledged or EXPIRED, lookup id)), account records, ledger entries (system_id, at, kind,
        amount, note, then optionally idempotency key, request digest, answer), IP bans
        ((ip key, until); the ended ones are dropped then), the health row when
        ``probe``, and text messages as they are now (``sms``: rows of the sms table)."""
        steps: list[tuple[str, list]] = []
        if lookups:
            _in_chunks(steps, _INSERT_LOOKUPS, lookups)
            spans, strays = self._spans.add(lookups, _SYSTEM_ID)
            _in_chunks(steps, _SAVE_SPANS, spans)
            steps += [(account_spans.SAVE_STRAY, [stray]) for stray in strays]
            queued = [row[0] for row in lookups if row[_PENDING] == PENDING_RECEIPT]
            if queued:
                _in_chunks(steps, _QUEUE_RECEIPTS, queued)
            if self._tally_from is not None:
                self._count_in(lookups)
        if (self._tally_count and self._claim is None and self._mark == self._tally_from
                and time.monotonic() - self._claimed_at >= ROLLUP_EVERY):
            self._claim_tally(steps)
        ready = self._rollups_ready
        if ready is not None:
            self._rollups_ready = None
            steps += ready
        if acks:
            _in_chunks(steps, _DEQUEUE_RECEIPTS, [lookup_id for _, lookup_id in acks])
            steps += [(_EXPIRE, [ack]) for ack in acks if ack[0] != PENDING_NONE]
        if accounts:
            now = time.time()
            steps += [(_SAVE_ACCOUNT, [sid, rec, now]) for sid, rec in accounts]
        steps += [(_ADD_LEDGER, [tuple(entry) + (None,) * (8 - len(entry))]) for entry in ledger]
        if bans:
            steps.append((_END_BANS, [time.time()]))
            steps += [(_SAVE_BAN, [tuple(ban)]) for ban in bans]
        if probe:
            steps.append((_PROBE, [time.time()]))
        if sms:
            # A message changed twice in one commit: the last state wins (a chunk may not
            # upsert one id twice).
            _in_chunks(steps, _SAVE_SMS, list({row[0]: row for row in sms}.values()))
        return steps

    # ------------------------------------------------------------- rollups
    def _count_in(self, rows: list[tuple]) -> None:
        """Adds a commit's lookups to the sums in memory, day by day (ids grow with time)."""
        i, n = 0, len(rows)
        while (i := _sum_rollups(self._day_sums, rows, i, self._day[1])) < n:
            _, end, day = self.periods.span(time_of_id(rows[i][0]))
            self._day = (day, max(first_id_at(end), rows[i][0] + 1))
            self._day_sums = self._tally.setdefault(day, {})
        self._tally_count += n
        self._tally_last = rows[-1][0]

    def _claim_tally(self, steps: list[tuple[str, list]]) -> None:
        """Steps that add the sums in memory to the rollups and move the mark past them, if
        the mark is where they start and the history holds exactly the lookups they count
        (a commit that failed since left some out: then nothing changes and the rollups'
        thread sums that range from the history). Counting again starts at their end."""
        frm, to = self._tally_from, self._tally_last
        assert frm is not None
        sums = {(sid, day, cc, network, err): v for day, of_day in self._tally.items()
                for (sid, cc, network, err), v in of_day.items()}
        steps += _claim(frm, to, self._tally_count, sums)
        self._claim = (frm, to, time.monotonic())
        self._claimed_at = time.monotonic()
        self._tally = {}
        self._day_sums = self._tally.setdefault(self._day[0], {})
        self._tally_from, self._tally_count = to, 0

    def rollups_due(self, limit: int = 200_000, upto: int | None = None) -> list[tuple[str, list]] | None:
        """The steps that add the lookups written since the rollups' mark to the per-day
        rollups and move the mark past them (None: nothing new). Read from the history on
        this thread's reader, so a group commit only upserts a few rows per account,
        day and value, however many lookups they sum. A claim, as of the sums in memory: it
        changes nothing unless the mark is still where it was read (a commit holding it may
        fail, or come after another's), so every lookup is summed exactly once. A backlog (lookups written
        by other means) is summed ``limit`` lookups at a time."""
        db = self._reader()
        mark, newest = db.execute(_ROLLUP_MARK).fetchone()
        if upto is not None and newest is not None:
            newest = min(newest, upto)
        if newest is None or newest <= mark:
            return None
        upto = newest
        if time_of_id(newest) - time_of_id(mark) > 60:
            row = db.execute(_ROLLUP_UPTO, (mark, limit - 1)).fetchone()
            upto = min(row[0], newest) if row else newest
        sums = new_rollups(db, mark, upto, self.periods.span)
        return _claim(mark, upto, sum(n for n, _ in sums.values()), sums)

    def add_rollups(self, sums: dict[RollupKey, list[int]]) -> None:
        """Adds ``sums`` (``domain.rollup``'s form) to the rollups directly, now: how
        bench/rollups.py fills a year of them without a year of lookups."""
        mark = self._reader().execute("SELECT mark FROM rollup_mark").fetchone()[0]
        self.transaction(_claim(mark, mark, 0, sums))   # no lookup: the mark stays

    def catch_up_spans(self) -> None:
        """Writes where each account's lookups are for those written by other means than
        the group commit (bench/prefill.py), now, in this thread."""
        account_spans.catch_up(self._writer)

    def catch_up_rollups(self) -> None:
        """Sums every lookup not yet in the rollups, now, in this thread (a store filled
        by other means than the group commit: bench/prefill.py)."""
        while (steps := self.rollups_due()) is not None:
            self.transaction(steps)

    def _follow_mark(self) -> None:
        """The rollups' thread, once a second: reads the mark; a claim it reached is done;
        a range no claim will sum (a claim that did not take, a crash's backlog before the
        sums in memory began) is summed from the history, ready for the next commit."""
        while not self._closing.wait(ROLLUP_EVERY):
            try:
                mark = self._reader().execute("SELECT mark FROM rollup_mark").fetchone()[0]
                claim = self._claim
                if claim is not None and mark == claim[1]:
                    self._claim = claim = None
                self._mark = mark
                target = claim[1] if claim is not None else self._tally_from
                if target is None or mark >= target or self._rollups_ready is not None:
                    continue
                if claim is not None and mark == claim[0] and time.monotonic() - claim[2] < 2 * ROLLUP_EVERY:
                    continue  # the claim's commit may still be running
                self._rollups_ready = self.rollups_due(upto=target)
            except sqlite3.Error as exc:  # read again in a second; nothing is lost
                log.warning("rollups_failed", error=repr(exc))
                continue
            if self._rollups_ready is not None and self._wake is not None:
                try:
                    self._wake()
                except RuntimeError:  # the server's loop has closed: the next start sums them
                    return

    def on_due(self, wake: Callable[[], object]) -> None:
        """Also starts the per-day rollups' sums in memory and their thread: a server's
        store sums its history (a tool that only reads it does not)."""
        self._wake = wake
        if self._summer is None:
            mark, newest = self._reader().execute(_ROLLUP_MARK).fetchone()
            self._tally_from = max(mark, newest or 0)   # ids from here on are counted in memory
            self._mark = mark
            self._summer = threading.Thread(target=self._follow_mark, name="hlrsmpp-rollups", daemon=True)
            self._summer.start()

    def close(self) -> None:
        self._closing.set()
        if self._summer is not None:
            self._summer.join()
            # The last second's lookups summed too (a bigger backlog is the next start's).
            try:
                if (steps := self.rollups_due()) is not None:
                    self.transaction(steps)
            except sqlite3.Error as exc:
                log.warning("rollups_failed", error=repr(exc))
        self.outbox.close()
        if self.committer is not None:
            self.committer.close()
        self._writer.close()

    # -------------------------------------------------------------- reads
    def account_records(self) -> dict[str, dict]:
        rows = self._reader().execute("SELECT system_id, record FROM accounts")
        return {sid: json.loads(rec) for sid, rec in rows}

    def pending_receipts(self) -> Iterator[sqlite3.Row]:
        """Every receipt not yet acknowledged, oldest first (replayed at start-up)."""
        return iter(self._reader().execute(
            f"SELECT {_COLUMNS} FROM receipt_queue JOIN lookups USING (id) ORDER BY id"))

    def lookup(self, message_id: int) -> sqlite3.Row | None:
        return self._reader().execute(
            f"SELECT {_COLUMNS} FROM lookups WHERE id = ?", (message_id,)).fetchone()

    def sms(self, message_id: int) -> sqlite3.Row | None:
        """A text message's row of the sms table (its lookups row has the same id), with
        ``sms`` as history pages give it."""
        return self._reader().execute(
            f"SELECT {', '.join(SMS_COLUMNS)}, segments || ',' || data_coding || ',' || state AS sms "
            "FROM sms WHERE id = ?", (message_id,)).fetchone()

    def batch(self, batch_id: int) -> list[sqlite3.Row]:
        return self._reader().execute(
            f"SELECT {_COLUMNS} FROM lookups WHERE batch_id = ? ORDER BY id",
            (batch_id,)).fetchall()

    def history(self, system_id: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 1000, after_id: int = 0,
                newest_first: bool = False) -> list[sqlite3.Row]:
        """A page of lookups in id (time) order (see ``history_page``)."""
        return history_page(self._reader(), system_id, since, until, limit, after_id, newest_first)

    def history_scan(self, system_id: str | None, since: float | None, until: float | None,
                     limit: int, after_id: int, newest_first: bool, match: tuple[str, list],
                     scan: int) -> tuple[list[sqlite3.Row], int | None]:
        """A filtered page over a bounded range (see ``history_scan``)."""
        return history_scan(self._reader(), system_id, since, until, limit, after_id, newest_first,
                            match, scan)

    def ledger(self, system_id: str) -> list[sqlite3.Row]:
        return self._reader().execute(
            "SELECT at, kind, amount, note FROM ledger WHERE system_id = ? ORDER BY id",
            (system_id,)).fetchall()

    def idempotent(self, system_id: str, key: str) -> tuple[str, str] | None:
        """The (request digest, answer) of the account's ledger entry made with this
        Idempotency-Key, if any."""
        return self._reader().execute(
            "SELECT idem_request, idem_answer FROM ledger WHERE system_id = ? AND idem_key = ?",
            (system_id, key)).fetchone()

    def ledger_totals(self) -> dict[str, int]:
        """Per account: the sum of its ledger (credit ever added), for audits: an
        account's credit is this less the cost of its lookups."""
        rows = self._reader().execute("SELECT system_id, SUM(amount) FROM ledger GROUP BY system_id")
        return {sid: total for sid, total in rows}

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per account: (lookups, total cost) — for audits and tests."""
        rows = self._reader().execute("SELECT system_id, COUNT(*), SUM(cost) FROM lookups GROUP BY system_id")
        return {sid: (n, cost or 0) for sid, n, cost in rows}

    def period_counts(self, starts: tuple[float, float, float]) -> dict[str, tuple[int, int, int]]:
        """Lookups per account since each of ``starts`` (day, week, month): ids begin with
        their millisecond, so it is one range scan of the primary key, no index on time
        (NOT INDEXED: never another index for its order by account)."""
        day, week, month = (first_id_at(t) for t in starts)
        rows = self._reader().execute(
            "SELECT system_id, SUM(id >= ?), SUM(id >= ?), SUM(id >= ?) FROM lookups NOT INDEXED "
            "WHERE id >= ? GROUP BY system_id", (day, week, month, min(week, month)))
        return {sid: (d, w, m) for sid, d, w, m in rows}

    def rollups(self, system_id: str, since: str, until: str, by: str) -> list[tuple]:
        """(value of ``by``, lookups, cost) per value, from the per-day rollups of days
        ``since`` <= day < ``until`` (YYYY-MM-DD), and the account's lookups of the last
        second or so not summed into them yet: never the history beyond that."""
        db = self._reader()
        db.execute("BEGIN")  # the rollups and their mark from one snapshot
        try:
            rows = rollup_sums(db, system_id, since, until, by)
            mark, newest = db.execute(_ROLLUP_MARK).fetchone()
            recent = new_rollups(db, mark, newest, self.periods.span, system_id) if newest and newest > mark else {}
        finally:
            db.execute("COMMIT")
        if not recent:
            return [tuple(r) for r in rows]
        dim = ROLLUP_DIMENSIONS[by]
        out = {value: [n, cost] for value, n, cost in rows}
        for (_, d, value, day), (n, cost) in rollup_dimensions(recent).items():
            if d == dim and since <= day < until:
                key = day if dim == "d" else int(value) if dim == "s" else value
                total = out.setdefault(key, [0, 0])
                total[0] += n
                total[1] += cost
        return [(key, n, cost) for key, (n, cost) in sorted(out.items())]

    def max_id(self) -> int:
        return self._reader().execute("SELECT COALESCE(MAX(id), 0) FROM lookups").fetchone()[0]

    def bans(self, now: float) -> list[tuple[str, float]]:
        """The IP bans still running at ``now``: (ip key, until)."""
        return self._reader().execute("SELECT ip, until FROM bans WHERE until > ?", (now,)).fetchall()


# Multi-row statements in a few fixed sizes (each prepared once, then cached): one
# sqlite3_step per chunk instead of one per row. executemany steps, and gives up and
# re-takes the GIL, once per row, in a ping-pong with the event loop's thread.
_CHUNKS = (256, 64, 16, 4, 1)
_ROW = f"({', '.join('?' * len(LOOKUP_COLUMNS))})"
_INSERT_LOOKUPS = {n: f"INSERT INTO lookups ({', '.join(LOOKUP_COLUMNS)}) VALUES {', '.join([_ROW] * n)}"
                   for n in _CHUNKS}
_QUEUE_RECEIPTS = {n: f"INSERT INTO receipt_queue (id) VALUES {', '.join(['(?)'] * n)}" for n in _CHUNKS}
_DEQUEUE_RECEIPTS = {n: f"DELETE FROM receipt_queue WHERE id IN ({', '.join('?' * n)})" for n in _CHUNKS}
_SAVE_SPANS = {n: account_spans.save_spans(n) for n in _CHUNKS}
_PENDING = LOOKUP_COLUMNS.index("pending")
_SYSTEM_ID = LOOKUP_COLUMNS.index("system_id")
_EXPIRE = "UPDATE lookups SET pending=? WHERE id=?"
_SAVE_ACCOUNT = ("INSERT INTO accounts (system_id, record, updated) VALUES (?, ?, ?) "
                 "ON CONFLICT(system_id) DO UPDATE SET record=excluded.record, updated=excluded.updated")
_ADD_LEDGER = ("INSERT INTO ledger (system_id, at, kind, amount, note, idem_key, idem_request, idem_answer) "
               "VALUES (?,?,?,?,?,?,?,?)")
_PROBE = "INSERT INTO health (id, at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at=excluded.at"
_SAVE_BAN = ("INSERT INTO bans (ip, until) VALUES (?, ?) "
             "ON CONFLICT(ip) DO UPDATE SET until=max(until, excluded.until)")
_END_BANS = "DELETE FROM bans WHERE until <= ?"
SMS_COLUMNS = ("id", "segments", "data_coding", "registered_delivery", "source_addr", "text", "state", "done")
_SMS_ROW = f"({', '.join('?' * len(SMS_COLUMNS))})"
_SAVE_SMS = {n: f"INSERT INTO sms ({', '.join(SMS_COLUMNS)}) VALUES {', '.join([_SMS_ROW] * n)} "
                "ON CONFLICT(id) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in SMS_COLUMNS[1:])
             for n in _CHUNKS}
#: How often the lookups written since are summed into the per-day rollups (seconds).
ROLLUP_EVERY = 1.0
# A claim of rollup sums (see _claim): from, count, to; the sums while pending is to; the mark.
_CLAIM_OPEN = ("UPDATE rollup_mark SET pending = ?3 WHERE mark = ?1 AND "
               "(SELECT COUNT(*) FROM lookups WHERE id > ?1 AND id <= ?3) = ?2")
_ADD_CLAIMED = {n: "INSERT INTO rollup_sums (system_id, dim, value, day, count, cost) SELECT * FROM "
                   f"(VALUES {', '.join(['(?, ?, ?, ?, ?, ?)'] * n)}) WHERE (SELECT pending FROM rollup_mark) = ? "
                   "ON CONFLICT (system_id, dim, value, day) "
                   "DO UPDATE SET count = count + excluded.count, cost = cost + excluded.cost"
                for n in _CHUNKS}
_CLAIM_CLOSE = "UPDATE rollup_mark SET mark = pending, pending = NULL WHERE pending = ?"
_ROLLUP_MARK = "SELECT mark, (SELECT MAX(id) FROM lookups) FROM rollup_mark"
_ROLLUP_UPTO = "SELECT id FROM lookups WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?"
# A lookup's network in the rollups: the one the subscriber is on.
_NETWORK = "CASE WHEN ported AND p_nnc != '' THEN p_nnc ELSE nnc END"
_SUM_NEW = (f"SELECT system_id, cc, {_NETWORK}, err, COUNT(*), SUM(cost) FROM lookups NOT INDEXED "
            "WHERE id > ? AND id <= ? GROUP BY 1, 2, 3, 4")
_SUM_NEW_OF = f"SELECT cc, {_NETWORK}, err, COUNT(*), SUM(cost) FROM {{}} GROUP BY 1, 2, 3"
#: Every statement a group commit runs (the C committer prepares them at start-up).
_STATEMENTS = [*_INSERT_LOOKUPS.values(), *_SAVE_SPANS.values(), account_spans.SAVE_STRAY,
               *_QUEUE_RECEIPTS.values(), *_DEQUEUE_RECEIPTS.values(),
               _CLAIM_OPEN, *_ADD_CLAIMED.values(), _CLAIM_CLOSE,
               _EXPIRE, _SAVE_ACCOUNT, _ADD_LEDGER,
               _SAVE_BAN, _END_BANS, _PROBE, *_SAVE_SMS.values()]
#: What reads select: the lookup's columns, ``pending`` as its receipt's state now.
_COLUMNS = ", ".join(
    "CASE WHEN pending = 1 AND NOT EXISTS (SELECT 1 FROM receipt_queue q WHERE q.id = lookups.id) "
    "THEN 0 ELSE pending END AS pending" if c == "pending" else c for c in LOOKUP_COLUMNS)
#: History pages add, after the lookup's columns (which Lookup.from_row takes), a text
#: message's segments, data_coding and state as "3,0,2" (NULL for a lookup).
_HISTORY_COLUMNS = _COLUMNS + (
    ", (SELECT segments || ',' || data_coding || ',' || state FROM sms WHERE sms.id = lookups.id) AS sms")


def open_reader(file: str | Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection that reads (rows by name): each thread, or reader process, has its
    own; under WAL it reads a snapshot and never waits for the writer, nor it for it."""
    db = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    db.row_factory = sqlite3.Row
    return db


class Outbox:
    """The notifications' outbox (server/notify.py) in its own table, on a connection of
    its own (short transactions beside the group commit, like retention's)."""

    def __init__(self, store: Store):
        self.store = store
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()   # held by every use of the connection, close included

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("the notifications outbox is closed")
        if self._db is None:
            self._db = self.store._connect()
            self._db.row_factory = sqlite3.Row
        return self._db

    def add(self, events: list[tuple[str, str, str, str, list[str]]]) -> list[str]:
        """(system_id, kind, key, data JSON, channels) each written once per key: the
        kinds of those that were new. A low-credit key counts the credit given so far."""
        now = time.time()
        added = []
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                for sid, kind, key, data, channels in events:
                    if kind == "low_credit":
                        given = db.execute("SELECT COUNT(*) FROM ledger WHERE system_id = ? AND amount > 0",
                                           (sid,)).fetchone()[0]
                        key = f"{key}:{given}"
                    cur = db.execute(
                        "INSERT OR IGNORE INTO notifications (system_id, kind, key, at, data, pending, next_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", (sid, kind, key, now, data, " ".join(channels), now))
                    if cur.rowcount:
                        added.append(kind)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return added

    def due(self, now: float, limit: int = 100) -> list[dict]:
        """Notifications with a channel still to send, due at ``now``, oldest first."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT * FROM notifications WHERE pending != '' AND next_at <= ? ORDER BY next_at LIMIT ?",
                (now, limit)).fetchall()
        return [_notification(r) for r in rows]

    def settle(self, nid: int, results: dict[str, str | None], next_at: float) -> None:
        """One sending round of notification ``nid``: each channel's error, or None (sent)."""
        with self._lock:
            db = self._conn()
            row = db.execute("SELECT pending, sent FROM notifications WHERE id = ?", (nid,)).fetchone()
            if row is None:
                return
            sent = row["sent"].split() + [c for c, err in results.items() if err is None]
            pending = [c for c in row["pending"].split() if c not in sent]
            errors = "; ".join(f"{c}: {err}" for c, err in results.items() if err is not None)
            db.execute("UPDATE notifications SET pending = ?, sent = ?, attempts = attempts + 1, next_at = ?, "
                       "error = ? WHERE id = ?", (" ".join(pending), " ".join(sent), next_at, errors, nid))

    def list(self, system_id: str, limit: int = 100) -> list[dict]:
        """The account's notifications, newest first."""
        rows = self.store._reader().execute(
            "SELECT * FROM notifications WHERE system_id = ? ORDER BY id DESC LIMIT ?", (system_id, limit))
        return [_notification(r) for r in rows]

    def close(self) -> None:
        # A sender's call may still run on an executor thread when the server stops:
        # closing the connection under it would free what SQLite is reading.
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None


def _notification(r: sqlite3.Row) -> dict:
    return {"id": r["id"], "system_id": r["system_id"], "kind": r["kind"], "key": r["key"], "at": r["at"],
            "data": json.loads(r["data"]), "pending": r["pending"].split(), "sent": r["sent"].split(),
            "attempts": r["attempts"], "next_at": r["next_at"], "error": r["error"]}


def rollup_sums(db: sqlite3.Connection, system_id: str, since: str, until: str,
                by: str) -> list[tuple]:
    """See ``Store.rollups``: one range of rollup_sums' primary key, in its order."""
    dim = ROLLUP_DIMENSIONS[by]
    if dim == "d":
        return db.execute(
            "SELECT day, count, cost FROM rollup_sums WHERE system_id = ? AND dim = 'd' AND value = '' "
            "AND day >= ? AND day < ? ORDER BY day", (system_id, since, until)).fetchall()
    rows = db.execute(
        "SELECT value, SUM(count), SUM(cost) FROM rollup_sums WHERE system_id = ? AND dim = ? "
        "AND day >= ? AND day < ? GROUP BY value ORDER BY value", (system_id, dim, since, until)).fetchall()
    return [(int(v), n, cost) for v, n, cost in rows] if dim == "s" else rows


def _history_range(since: float | None, until: float | None, after_id: int,
                   newest_first: bool) -> tuple[int, int | None]:
    """The ids a history page may hold: above the first, below the second (None: no end),
    from the dates and the keyset cursor."""
    lo = first_id_at(since) - 1 if since else 0
    below = [first_id_at(until)] if until is not None else []
    if newest_first and after_id:
        below.append(after_id)
    return (lo if newest_first else max(after_id, lo)), (min(below) if below else None)


def _select(db: sqlite3.Connection, columns: str, system_id: str | None, lo: int, hi: int | None,
            newest_first: bool, limit: int, match: tuple[str, list] | None = None,
            offset: int = 0) -> list[sqlite3.Row]:
    """``columns`` of the lookups with lo < id < hi (hi None: no end) of ``system_id`` (or
    every account's) that ``match`` (an SQL condition, its arguments), in id order: an
    account's through its spans (accounts/spans.py), every account's by id alone."""
    if system_id is not None:
        return account_spans.page(db, columns, system_id, lo, hi, newest_first, limit, match, offset)
    where, args = ["id > ?"], [lo]
    if hi is not None:
        where.append("id < ?")
        args.append(hi)
    if match is not None:
        where.append(f"({match[0]})")
        args += match[1]
    return db.execute(f"SELECT {columns} FROM lookups WHERE {' AND '.join(where)} "
                      f"ORDER BY id {'DESC' if newest_first else ''} LIMIT ? OFFSET ?",
                      [*args, limit, offset]).fetchall()


def history_page(db: sqlite3.Connection, system_id: str | None = None, since: float | None = None,
                 until: float | None = None, limit: int = 1000, after_id: int = 0,
                 newest_first: bool = False) -> list[sqlite3.Row]:
    """A page of lookups in id (time) order: keyset paging, the next page starts after
    the last id of this one (``after_id``: below it when ``newest_first``), so a page
    costs the same at the start of the history or deep in it, and an account's page
    reads the spans of that account's rows only, however few they are among others'."""
    lo, hi = _history_range(since, until, after_id, newest_first)
    return _select(db, _HISTORY_COLUMNS, system_id, lo, hi, newest_first, limit)


def history_scan(db: sqlite3.Connection, system_id: str | None, since: float | None,
                 until: float | None, limit: int, after_id: int, newest_first: bool,
                 match: tuple[str, list], scan: int) -> tuple[list[sqlite3.Row], int | None]:
    """A page of the lookups that ``match`` (an SQL condition on the row, its arguments)
    among at most ``scan`` of the page's range: (rows, the cursor of the next page, None
    at the end). The scanned range ends at the ``scan``-th row of the range (the ids
    only), then the condition is checked in SQLite on that range alone: a page costs at
    most ``scan`` rows whatever the filter, and may hold fewer than ``limit`` rows and
    still have a next page."""
    lo, hi = _history_range(since, until, after_id, newest_first)
    bound = _select(db, "id", system_id, lo, hi, newest_first, 1, offset=scan - 1)
    if bound:   # the scanned range: down to the bound (newest first), or up to it
        if newest_first:
            lo = bound[0][0] - 1
        else:
            hi = bound[0][0] + 1
    rows = _select(db, _HISTORY_COLUMNS, system_id, lo, hi, newest_first, limit, match)
    if len(rows) == limit:
        return rows, rows[-1]["id"]
    return rows, bound[0][0] if bound else None


def new_rollups(db: sqlite3.Connection, mark: int, upto: int, span: Callable[[float], tuple[float, float, str]],
                system_id: str | None = None) -> dict[RollupKey, list[int]]:
    """The lookups with mark < id <= upto (of ``system_id``, or all) summed per rollup key,
    as ``domain.rollup`` sums a commit's: a lookup's day is its id's (the instant it was
    taken), so each day of the range is one range of ids. ``span(t)``: (start, end,
    name) of the day holding instant t."""
    first = db.execute("SELECT MIN(id) FROM lookups WHERE id > ? AND id <= ?", (mark, upto)).fetchone()[0]
    out: dict[RollupKey, list[int]] = {}
    if first is None:
        return out
    t = time_of_id(first)
    while True:
        start, end, day = span(t)
        lo, hi = max(mark, first_id_at(start) - 1), min(upto, first_id_at(end) - 1)
        if lo < hi and system_id is None:
            for sid, cc, network, err, n, cost in db.execute(_SUM_NEW, (lo, hi)):
                out[(sid, day, cc, network, err)] = [n, cost or 0]
        elif lo < hi:
            sql, args = account_spans.rows_of(db, system_id, lo, hi + 1)
            for cc, network, err, n, cost in db.execute(_SUM_NEW_OF.format(sql), args):
                out[(system_id, day, cc, network, err)] = [n, cost or 0]
        if hi >= upto:
            return out
        t = end


_sum_rollups = getattr(_native, "sum_rollups", sum_rollup_rows)


def _claim(frm: int, to: int, count: int, sums: dict[RollupKey, list[int]]) -> list[tuple[str, list]]:
    """The steps of a claim: add ``sums`` (``domain.rollup``'s form) to the rollups and
    move the mark from ``frm`` to ``to``, only if the mark is at ``frm`` and the history
    holds ``count`` lookups after it up to ``to``; else they change nothing."""
    steps: list[tuple[str, list]] = [(_CLAIM_OPEN, [frm, count, to])]
    chunks: list[tuple[str, list]] = []
    _in_chunks(chunks, _ADD_CLAIMED, [key + (n, cost) for key, (n, cost) in rollup_dimensions(sums).items()])
    steps += [(sql, params + [to]) for sql, params in chunks]
    steps.append((_CLAIM_CLOSE, [to]))
    return steps


def _in_chunks(steps: list, statements: dict[int, str], items: list) -> None:
    """``items`` (values, or rows of values) as statements of the sizes in _CHUNKS,
    appended to ``steps``."""
    pos, total = 0, len(items)
    for n in _CHUNKS:
        while total - pos >= n:
            steps.append((statements[n], items[pos:pos + n]))
            pos += n


def _private(directory: Path, db: Path) -> None:
    """The data directory 0700 and the database 0600, whatever the umask: it holds the
    accounts (password hashes), their credit and every lookup. SQLite gives its -wal and
    -shm files the database file's mode; those already there are set too."""
    os.chmod(directory, 0o700)
    os.close(os.open(db, os.O_RDWR | os.O_CREAT, 0o600))
    for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            os.chmod(f, 0o600)
        except FileNotFoundError:
            pass


def rows_as_dicts(rows: Iterable[sqlite3.Row]) -> list[dict]:
    return [dict(r) for r in rows]
