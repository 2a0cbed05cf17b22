"""History reads off the event loop: JSON pages and CSV exports of the lookups.

A page or an export chunk is read AND rendered to bytes by a reader: with the SQLite
store, in one of ``history.readers`` processes of lower priority, each with its own
connection (a WAL snapshot: it never waits for the group commit, nor the commit for
it). Rendering a million rows holds a GIL for seconds; in the server's own process,
even on a worker thread, that GIL is the event loop's, and every lookup would wait for
it. The loop only hands over the query and writes the bytes it gets back, awaiting
the client's drain after each chunk (a slow client slows its export, nothing else).
Readers are a bounded pool: more concurrent reads queue for it. On a shared (Redis)
store, or with ``history.readers: 0``, the same work runs on a small thread pool of
the server's process instead.
"""
from __future__ import annotations

import asyncio
import csv
import io
import json
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import AsyncIterator, Callable, Mapping

from ...accounts.store import Store as SQLiteStore, history_page, open_reader
from ...domain import Lookup
from .common import LOOKUP_FIELDS, lookup_view, with_sms

#: Rows per CSV chunk: one reader task, one write to the client.
CSV_CHUNK = 5000

# What a history query is: (account, since, until, after, newest_first).
Query = tuple

# ---------------------------------------------------------------- rendering (any reader)


def page_views(rows_of: Callable, names: Mapping[str, str], query: Query, limit: int) -> dict:
    """A page: {"items": [lookup views], "next": the cursor of the next page, or None}."""
    account, since, until, after, desc = query
    rows = rows_of(account, since, until, limit, after, desc)
    at = time.time()
    items = [with_sms(lookup_view(Lookup.from_row(r), at, names), r) for r in rows]
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


def render_page(rows_of: Callable, names: Mapping[str, str], query: Query, limit: int) -> bytes:
    """A JSON page: {"items": [...], "next": id or null}."""
    return json.dumps(page_views(rows_of, names, query, limit), separators=(",", ":")).encode()


def render_csv(rows_of: Callable, names: Mapping[str, str], query: Query, limit: int,
               header: bool) -> tuple[bytes, int, int]:
    """Up to ``limit`` rows as CSV lines (the header first when ``header``): (bytes,
    last id, rows)."""
    account, since, until, after, desc = query
    rows = rows_of(account, since, until, limit, after, desc)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if header:
        writer.writerow(LOOKUP_FIELDS)
    at = time.time()
    for r in rows:
        v = lookup_view(Lookup.from_row(r), at, names)
        writer.writerow(["" if v[k] is None else str(v[k]).lower() if isinstance(v[k], bool)
                         else v[k] for k in LOOKUP_FIELDS])
    return buf.getvalue().encode(), rows[-1]["id"] if rows else after, len(rows)


# ---------------------------------------------------------------- in a reader process

_rows_of: Callable | None = None
_names: Mapping[str, str] = {}


def _open(file: str, names: Mapping[str, str]) -> None:
    """A reader process starts: lower priority than the server, its own connection."""
    global _rows_of, _names
    _names = names
    try:
        os.nice(10)
    except OSError:
        pass
    db = open_reader(file)
    db.execute("PRAGMA query_only=1")
    _rows_of = partial(history_page, db)


def _page(query: Query, limit: int) -> bytes:
    assert _rows_of is not None
    return render_page(_rows_of, _names, query, limit)


def _views(query: Query, limit: int) -> dict:
    assert _rows_of is not None
    return page_views(_rows_of, _names, query, limit)


def _csv(query: Query, limit: int, header: bool) -> tuple[bytes, int, int]:
    assert _rows_of is not None
    return render_csv(_rows_of, _names, query, limit, header)


# ---------------------------------------------------------------- on the loop


class HistoryReaders:
    """The pool that reads history for the HTTP API (started at the first read)."""

    def __init__(self, store, processes: int, network_names: Mapping[str, str]):
        self.store = store
        self.network_names = network_names
        self.processes = processes if isinstance(store, SQLiteStore) else 0
        self._pool: Executor | None = None

    def _executor(self) -> Executor:
        if self._pool is None:
            if self.processes:
                # spawn: a fresh interpreter, nothing of the server's threads or sockets.
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_open, initargs=(str(self.store.file), self.network_names))
                # Every reader started now, not one more under load later.
                for _ in range(self.processes):
                    self._pool.submit(int)
            else:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix="hlrsmpp-history")
        return self._pool

    async def _run(self, fn: Callable, *args):
        loop = asyncio.get_running_loop()
        if self.processes:
            return await loop.run_in_executor(self._executor(), fn, *args)
        # Threads: the same rendering, over the store's own (per-thread) readers.
        render = {_page: render_page, _views: page_views, _csv: render_csv}[fn]
        return await loop.run_in_executor(self._executor(), render, self.store.history,
                                          self.network_names, *args)

    async def page(self, query: Query, limit: int) -> bytes:
        """A JSON page of at most ``limit`` lookups, rendered."""
        return await self._run(_page, query, limit)

    async def views(self, query: Query, limit: int) -> dict:
        """A page as data (for pages rendered elsewhere, e.g. HTML): {"items": [lookup
        views], "next": cursor or None}; the next page is ``after=next``."""
        return await self._run(_views, query, limit)

    async def csv(self, query: Query, limit: int | None) -> AsyncIterator[bytes]:
        """Every matching lookup (or ``limit`` of them) as CSV, chunk after chunk; the
        next chunk is read while the caller writes this one."""
        account, since, until, after, desc = query
        left = limit

        def ask(after: int, header: bool) -> asyncio.Future:
            n = CSV_CHUNK if left is None else min(CSV_CHUNK, left)
            return asyncio.ensure_future(self._run(_csv, (account, since, until, after, desc), n, header))

        n = CSV_CHUNK if left is None else min(CSV_CHUNK, left)
        pending = ask(after, True)
        try:
            while True:
                data, after, count = await pending
                if left is not None:
                    left -= count
                more = count == n and left != 0
                if more:
                    n = CSV_CHUNK if left is None else min(CSV_CHUNK, left)
                    pending = ask(after, False)
                yield data
                if not more:
                    return
        finally:
            if not pending.done():
                pending.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
