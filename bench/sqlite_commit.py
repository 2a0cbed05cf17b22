"""What one group commit costs SQLite itself, per lookup, for variants of the schema.

    .venv/bin/python bench/sqlite_commit.py

Each variant: 1,500 commits of 122 lookup rows of the real schema (MIGRATIONS) with the
previous commit's receipts acknowledged, the rows built beforehand: the figure is SQLite
(and the sqlite3 module's binding), not the server. Schema 1 acknowledged a receipt by
updating its lookup's row (a partial index found the pending ones); schema 2 queues
receipts in a table of their own, as the store does now. See BENCHMARKS.md.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
import time

from hlrsmpp.accounts.store import MIGRATIONS
from hlrsmpp.domain import LOOKUP_COLUMNS

ROWS, COMMITS = 122, 1500


def run(label: str, schema: int = 2, drop: tuple[str, ...] = (), extra: str = "", page: int = 4096) -> None:
    db = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "x.sqlite3"), isolation_level=None)
    db.execute(f"PRAGMA page_size={page}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for script in MIGRATIONS[:schema]:
        db.executescript(script)
    for index in drop:
        db.execute(f"DROP INDEX {index}")
    if extra:
        db.executescript(extra)
    row = "(" + ",".join("?" * len(LOOKUP_COLUMNS)) + ")"
    insert = f"INSERT INTO lookups ({','.join(LOOKUP_COLUMNS)}) VALUES " + ",".join([row] * ROWS)
    clear = f"UPDATE lookups SET pending=0 WHERE id IN ({','.join('?' * ROWS)})"
    queue = "INSERT INTO receipt_queue (id) VALUES " + ",".join(["(?)"] * ROWS)
    dequeue = f"DELETE FROM receipt_queue WHERE id IN ({','.join('?' * ROWS)})"
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
        if schema >= 2:
            db.execute(queue, ids[k])
            db.execute(dequeue, ids[k - 1])
        else:
            db.execute(clear, ids[k - 1])
        db.execute("COMMIT")
    n = COMMITS * ROWS
    print(f"{label:44s} {(time.perf_counter() - wall) / n * 1e6:5.2f} us/lookup wall"
          f"  {(time.thread_time() - cpu) / n * 1e6:5.2f} CPU")


if __name__ == "__main__":
    run("schema 1: acknowledgements update the row", schema=1)
    run("schema 1 without its lookups_pending index", schema=1, drop=("lookups_pending",))
    run("schema 2: the receipt queue (the store now)")
    run("schema 2, no checkpoint on the commit path", extra="PRAGMA wal_autocheckpoint=0;")
    run("schema 2, 16 KiB pages", page=16384)
