"""Where an account's lookups are in the history, without an index entry per lookup.

The history is one table in id (time) order, every account's lookups interleaved. An
index on (account, id) would let a page of one account read its rows only, but it costs
every lookup a B-tree insert on the group commit's thread (about 2 us of its ~20). Instead
each group commit records, per account it holds, a span: the first and last id of that
account's lookups in it (``account_spans``). A span grows from commit to commit while the
rows since its end hold at least one of the account's lookups in DENSITY (give or take
SLACK rows): the rule is local, so a gap of other accounts' rows is never swallowed, however
busy the account was before. A few lookups spread over a commit get a span each. So a
page reads about DENSITY rows at most per row it returns, whatever the account's share of
the traffic, and a busy account writes a span row per commit, not an index entry per
lookup.

An account's spans never overlap (a new span starts above the open one's end), so in
``lo`` order they are in ``hi`` order too, and a row is in at most one of them.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from ..ids import MAX_ID

#: A span grows while the rows since its end are at most DENSITY per new lookup of its
#: account, plus SLACK.
DENSITY = 16
SLACK = 32
#: Rows a span may start with when the history is read back (catch_up), as a group commit's.
COMMIT_ROWS = 256

SCHEMA = """
    CREATE TABLE account_spans (
        account TEXT NOT NULL,
        lo      INTEGER NOT NULL,
        hi      INTEGER NOT NULL,
        PRIMARY KEY (account, lo)
    ) WITHOUT ROWID;
"""


def save_spans(rows: int) -> str:
    """The upsert of ``rows`` spans (account, lo, hi): a span grows under its first id."""
    return (f"INSERT INTO account_spans (account, lo, hi) VALUES {', '.join(['(?, ?, ?)'] * rows)} "
            "ON CONFLICT (account, lo) DO UPDATE SET hi = excluded.hi")


#: A lookup below its account's open span (never seen: ids are taken in the order rows
#: are written; kept for safety): a span of its own, unless a span already holds it.
SAVE_STRAY = ("INSERT INTO account_spans (account, lo, hi) SELECT ?1, ?2, ?2 WHERE NOT EXISTS "
              "(SELECT 1 FROM (SELECT hi FROM account_spans WHERE account = ?1 AND lo <= ?2 "
              "ORDER BY lo DESC LIMIT 1) WHERE hi >= ?2)")


class AccountSpans:
    """The spans still growing, one per account, and the rows written so far (in memory:
    after a restart every account starts a new span, above every id written before)."""

    __slots__ = ("_open", "_rows")

    def __init__(self) -> None:
        self._open: dict[str, list[int]] = {}   # account -> [lo, hi, the row number of hi's lookup]
        self._rows = 0

    def add(self, rows: list[tuple[Any, ...]], at: int) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]]]:
        """What to write for ``rows`` (id first, the account at index ``at``): the spans,
        (account, lo, hi) upserts on (account, lo), and the stray lookups (account, id)."""
        before = self._rows
        self._rows = before + len(rows)
        out: list[tuple[str, int, int]] = []
        strays: list[tuple[str, int]] = []
        if not rows:
            return out, strays
        sids = [r[at] for r in rows]
        ids = [r[0] for r in rows]
        if ids[-1] > MAX_ID or ids != sorted(ids):   # never seen (ids are taken in write order)
            groups: dict[str, tuple[list[int], list[int]]] = {}
            for k, (sid, i) in enumerate(zip(sids, ids)):
                got = groups.setdefault(sid, ([], []))
                got[0].append(k)
                got[1].append(i)
            for sid, (where, own) in groups.items():
                if max(own) <= MAX_ID:   # else SQLite refuses the commit: no span holds it
                    self._account(sid, where, own, before, out, strays)
            return out, strays
        # Ids in order: an account's first and last rows and its count, in C passes over
        # the commit's accounts (a commit holds a few), not a Python step per row.
        last_row = len(rows) - 1
        if sids.count(sids[0]) == len(sids):   # one account's commit, the common case
            if not self._grow(sids[0], ids[0], ids[-1], len(ids), before, before + last_row, out):
                self._account(sids[0], list(range(len(ids))), ids, before, out, strays)
            return out, strays
        backwards = sids[::-1]
        for sid in dict.fromkeys(sids):
            k0, k1 = sids.index(sid), last_row - backwards.index(sid)
            if not self._grow(sid, ids[k0], ids[k1], sids.count(sid), before + k0, before + k1, out):
                where = [k for k in range(k0, k1 + 1) if sids[k] == sid]
                self._account(sid, where, [ids[k] for k in where], before, out, strays)
        return out, strays

    def _grow(self, sid: str, lo: int, hi: int, n: int, first: int, last: int,
              out: list[tuple[str, int, int]]) -> bool:
        """The span of ``n`` lookups of an account, ids ``lo``..``hi`` at rows ``first``..
        ``last`` of those written, if one span holds them: the open one grown, or a new
        one; False if they need a look row by row (spread out, or below the open span)."""
        span = self._open.get(sid)
        if span is not None and lo < span[0]:
            return False
        # The rule is local: the rows from the span's end to this commit's last lookup
        # of the account, at most DENSITY per lookup of it (plus SLACK). A span long
        # dense does not swallow a long gap after it.
        if span is not None and (lo <= span[1] or last - span[2] <= DENSITY * n + SLACK):
            span[1], span[2] = max(span[1], hi), max(span[2], last)
            out.append((sid, span[0], span[1]))
            return True
        if n == 1 or last - first <= DENSITY * (n - 1) + SLACK:
            self._open[sid] = [lo, hi, last]
            out.append((sid, lo, hi))
            return True
        return False

    def _account(self, sid: str, where: list[int], own: list[int], before: int,
                 out: list[tuple[str, int, int]], strays: list[tuple[str, int]]) -> None:
        """The spans of one account's lookups in a commit: ``own`` ids at row ``where``
        of it (the commit's first row is row ``before`` of those written)."""
        opened = self._open
        span = opened.get(sid)
        if span is not None and min(own) < span[0]:
            strays += [(sid, i) for i in own if i < span[0]]
            kept = [(k, i) for k, i in zip(where, own) if i >= span[0]]
            if not kept:
                return
            where, own = [k for k, _ in kept], [i for _, i in kept]
        lo, hi, n = min(own), max(own), len(own)
        if self._grow(sid, lo, hi, n, before + where[0], before + where[-1], out):
            return
        if own != sorted(own):
            opened[sid] = [lo, hi, before + where[-1]]
            out.append((sid, lo, hi))
        else:
            # Few lookups spread over the commit: as many spans as keep the rule.
            cur, dirty = span, False
            for k, i in zip(where, own):
                row = before + k
                if cur is not None and (i <= cur[1] or row - cur[2] <= DENSITY + SLACK):
                    cur[1], cur[2], dirty = max(cur[1], i), row, True
                    continue
                if cur is not None and dirty:
                    out.append((sid, cur[0], cur[1]))
                cur, dirty = [i, i, row], True
            assert cur is not None
            opened[sid] = cur
            out.append((sid, cur[0], cur[1]))


def _span_at(db: sqlite3.Connection, system_id: str, lookup_id: int) -> tuple[int, int] | None:
    """(lo, hi) of the last span of ``system_id`` starting at or below ``lookup_id`` (the
    one that holds it, if one does: spans do not overlap)."""
    row = db.execute("SELECT lo, hi FROM account_spans WHERE account = ? AND lo <= ? ORDER BY lo DESC LIMIT 1",
                     (system_id, lookup_id)).fetchone()
    return None if row is None else (row[0], row[1])


def rows_of(db: sqlite3.Connection, system_id: str, lo: int, hi: int | None) -> tuple[str, list[Any]]:
    """The FROM and WHERE of a statement over the account's lookups with lo < id < hi
    (hi None: no end), and its arguments: the account's spans in order (the first the one
    holding lo + 1) and, inside each, the account's rows by id."""
    start = _span_at(db, system_id, lo + 1)
    # One lower and one upper bound on id, each clipped to the range: given two, SQLite
    # bounds the rows it reads by one of them and checks the other row by row.
    if hi is None:
        sql = "account_spans JOIN lookups ON id BETWEEN max(lo, ?) AND hi WHERE account = ? AND lo >= ?"
        args: list[Any] = [lo + 1, system_id, start[0] if start else lo + 1]
    else:
        sql = ("account_spans JOIN lookups ON id BETWEEN max(lo, ?) AND min(hi, ?) "
               "WHERE account = ? AND lo >= ? AND lo < ?")
        args = [lo + 1, hi - 1, system_id, start[0] if start else lo + 1, hi]
    sql += " AND system_id = ?"
    args.append(system_id)
    return sql, args


def page(db: sqlite3.Connection, columns: str, system_id: str, lo: int, hi: int | None,
         newest_first: bool, limit: int, match: tuple[str, list[Any]] | None = None,
         offset: int = 0) -> list[sqlite3.Row]:
    """Up to ``limit`` of ``columns`` of the account's lookups with lo < id < hi (hi None:
    no end) that ``match`` (an SQL condition, its arguments), in id order, the first
    ``offset`` left out: one statement (see ``rows_of``)."""
    sql, args = rows_of(db, system_id, lo, hi)
    if match is not None:
        sql += f" AND ({match[0]})"
        args += match[1]
    order = "lo DESC, id DESC" if newest_first else "lo, id"
    return db.execute(f"SELECT {columns} FROM {sql} ORDER BY {order} LIMIT ? OFFSET ?",
                      [*args, limit, offset]).fetchall()


def catch_up(db: sqlite3.Connection, chunk: int = 100_000) -> int:
    """Writes the spans of the lookups above the last span's end (a store filled by other
    means than the group commit, or one from before spans), in id order, ``chunk`` rows a
    transaction: how many lookups it covered."""
    newest = db.execute("SELECT id, system_id FROM lookups ORDER BY id DESC LIMIT 1").fetchone()
    held = None if newest is None else _span_at(db, newest[1], newest[0])
    if newest is None or (held is not None and held[1] >= newest[0]):
        return 0   # spans are written with their lookups, in id order: all of them have one
    after = db.execute("SELECT COALESCE(MAX(hi), 0) FROM account_spans").fetchone()[0]
    builder, done = AccountSpans(), 0
    while True:
        rows = db.execute("SELECT id, system_id FROM lookups WHERE id > ? ORDER BY id LIMIT ?",
                          (after, chunk)).fetchall()
        if not rows:
            return done
        db.execute("BEGIN IMMEDIATE")
        try:
            # In slices of about a group commit's size: a span of a chunk at once would
            # cover the whole chunk for an account with two lookups in it.
            for k in range(0, len(rows), COMMIT_ROWS):
                spans, strays = builder.add(rows[k:k + COMMIT_ROWS], 1)
                db.executemany(save_spans(1), spans)
                db.executemany(SAVE_STRAY, strays)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        done += len(rows)
        after = rows[-1][0]
