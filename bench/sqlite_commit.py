"""What one group commit costs SQLite itself, per lookup, for variants of the schema.

    .venv/bin/python bench/sqlite_commit.py

Each variant: 1,500 commits of 122 lookup rows of the real schema (MIGRATIONS) with the
previous commit's receipts acknowledged, the rows built beforehand: the figure is SQLite
(and the sqlite3 module's binding), not the server. See BENCHMARKS.md.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
import time

from hlrsmpp.accounts.store import LOOKUP_COLUMNS, MIGRATIONS

ROWS, COMMITS = 122, 1500


def run(label: str, drop: tuple[str, ...] = (), extra: str = "", page: int = 4096,
        pending_table: bool = False) -> None:
    db = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "x.sqlite3"), isolation_level=None)
    db.execute(f"PRAGMA page_size={page}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(MIGRATIONS[0])
    for index in drop:
        db.execute(f"DROP INDEX {index}")
    if extra:
        db.executescript(extra)
    row = "(" + ",".join("?" * len(LOOKUP_COLUMNS)) + ")"
    insert = f"INSERT INTO lookups ({','.join(LOOKUP_COLUMNS)}) VALUES " + ",".join([row] * ROWS)
    clear = f"UPDATE lookups SET pending=0 WHERE id IN ({','.join('?' * ROWS)})"
    queue = "INSERT INTO pending (id) VALUES " + ",".join(["(?)"] * ROWS)
    dequeue = f"DELETE FROM pending WHERE id IN ({','.join('?' * ROWS)})"
    now = time.time()
    base = int(now * 1000) * 1000
    batches = [[(base + k * 1000 + i, None, "demo", "smpp", "4477009%05d" % i, now, now, 1000, 0, "44",
                 "23410", 0, "", 0, "", "", None, 1) for i in range(ROWS)] for k in range(COMMITS + 1)]
    flat = [[v for r in rows for v in r] for rows in batches]
    ids = [[r[0] for r in rows] for rows in batches]
    wall, cpu = time.perf_counter(), time.thread_time()
    for k in range(1, COMMITS + 1):
        db.execute("BEGIN")
        db.execute(insert, flat[k])
        if pending_table:
            db.execute(queue, ids[k])
            db.execute(dequeue, ids[k - 1])
        else:
            db.execute(clear, ids[k - 1])
        db.execute("COMMIT")
    n = COMMITS * ROWS
    print(f"{label:44s} {(time.perf_counter() - wall) / n * 1e6:5.2f} us/lookup wall"
          f"  {(time.thread_time() - cpu) / n * 1e6:5.2f} CPU")


if __name__ == "__main__":
    run("the schema as it is")
    run("without the lookups_pending index", drop=("lookups_pending",))
    run("pending receipts in a table of their own", drop=("lookups_pending",), pending_table=True,
        extra="CREATE TABLE pending (id INTEGER PRIMARY KEY);")
    run("... and no checkpoint on the commit path", drop=("lookups_pending",), pending_table=True,
        extra="CREATE TABLE pending (id INTEGER PRIMARY KEY); PRAGMA wal_autocheckpoint=0;")
    run("16 KiB pages", page=16384)
