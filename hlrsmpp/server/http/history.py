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
import os
import time
from dataclasses import asdict, astuple, dataclass
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, AsyncIterator, Callable, Mapping, NamedTuple

from ...accounts.store import Store as SQLiteStore, history_page, history_scan, open_reader
from ...domain import Lookup
from .common import LOOKUP_FIELDS, lookup_view, with_sms
from .reader_process import ReaderProcesses

#: Rows per CSV chunk: one reader task, one write to the client.
CSV_CHUNK = 5000
#: With a filter, the most rows one page reads (a page may then hold fewer rows than
#: asked and still carry a cursor), and one CSV chunk.
PAGE_SCAN = 10_000
CSV_SCAN = 50_000

#: The lookup's result by status (a text message is filtered by its result code too).
STATUSES = ("DELIVRD", "UNDELIV", "ENROUTE")
_NETWORK_SQL = "(CASE WHEN ported != 0 AND p_nnc != '' THEN p_nnc ELSE nnc END)"


def _digits(text: str, name: str, lo: int, hi: int, what: str) -> str:
    s = text.strip().removeprefix("+")
    if not (s.isascii() and s.isdigit() and lo <= len(s) <= hi):
        raise ValueError(f"{name}: expected {what}, got {text!r}")
    return s


@dataclass(frozen=True)
class HistoryFilter:
    """What a history page or export keeps, beside the account and the dates: a status,
    an error code, a country (calling code), a network (MCC+MNC, the ported-to one when
    ported) and a number prefix; each optional, all of them together."""
    status: str | None = None
    err: int | None = None
    cc: str | None = None
    network: str | None = None
    prefix: str | None = None

    @classmethod
    def parse(cls, q: Mapping[str, str]) -> "HistoryFilter":
        """From a query string (blank fields are not filters); ValueError names the bad one."""
        def get(name: str) -> str | None:
            return (q.get(name) or "").strip() or None

        status = get("status")
        if status is not None and status.upper() not in STATUSES:
            raise ValueError(f"status: expected {', '.join(STATUSES[:-1])} or {STATUSES[-1]}, got {status!r}")
        err, cc, network, prefix = get("err"), get("cc"), get("network"), get("prefix")
        return cls(status=status.upper() if status else None,
                   err=int(_digits(err, "err", 1, 3, "an error code, 0..999")) if err else None,
                   cc=_digits(cc, "cc", 1, 3, "a country calling code, 1 to 3 digits") if cc else None,
                   network=_digits(network, "network", 5, 6, "MCC+MNC, 5 or 6 digits") if network else None,
                   prefix=_digits(prefix, "prefix", 1, 15, "the first digits of a number") if prefix else None)

    def __bool__(self) -> bool:
        return any(v is not None for v in astuple(self))

    def params(self) -> dict[str, str]:
        """The filter as query parameters (what ``parse`` reads back)."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}

    def sql(self, at: float) -> tuple[str, list]:
        """The condition on a row of the SQLite store, at time ``at``."""
        terms: list[str] = []
        args: list = []
        if self.status == "ENROUTE":
            terms.append("done > ?")
            args.append(at)
        elif self.status is not None or self.err is not None or self.network is not None:
            terms.append("done <= ?")   # a pending lookup has no result yet
            args.append(at)
            if self.status is not None:
                terms.append("err = 0" if self.status == "DELIVRD" else "err != 0")
        for term, value in (("err = ?", self.err), ("cc = ?", self.cc),
                            (f"{_NETWORK_SQL} = ?", self.network)):
            if value is not None:
                terms.append(term)
                args.append(value)
        if self.prefix is not None:
            terms.append("substr(msisdn, 1, ?) = ?")
            args += [len(self.prefix), self.prefix]
        return " AND ".join(terms) or "1", args

    def match(self, lk: Lookup, at: float) -> bool:
        """The same condition on a lookup (stores without SQL)."""
        done = at >= lk.done
        if self.status is not None:
            if self.status != ("ENROUTE" if not done else lk.stat):
                return False
        elif (self.err is not None or self.network is not None) and not done:
            return False
        network = lk.p_nnc if lk.ported and lk.p_nnc else lk.nnc
        return ((self.err is None or lk.err == self.err) and (self.cc is None or lk.cc == self.cc)
                and (self.network is None or network == self.network)
                and (self.prefix is None or lk.msisdn.startswith(self.prefix)))


class Query(NamedTuple):
    """What a history read reads: an account (None: all), dates, the cursor, the order,
    and a filter."""
    account: str | None
    since: float | None
    until: float | None
    after: int
    newest_first: bool
    where: HistoryFilter | None = None


# ---------------------------------------------------------------- reading (any reader)


def scan_rows(rows_of: Callable, sql_scan: Callable | None, query: Query, limit: int,
              scan: int) -> tuple[list, int | None]:
    """Up to ``limit`` rows of ``query`` and the cursor of what follows (None at the end).
    Unfiltered, a plain keyset page; filtered, at most ``scan`` rows of the range are read
    (by SQLite, with ``sql_scan``; else here, a chunk at a time)."""
    account, since, until, after, desc, where = query
    if not where:
        rows = rows_of(account, since, until, limit, after, desc)
        return rows, rows[-1]["id"] if len(rows) == limit else None
    at = time.time()
    if sql_scan is not None:
        return sql_scan(account, since, until, limit, after, desc, where.sql(at), scan)
    out: list = []
    while scan > 0:
        n = min(scan, max(limit, 1000))
        rows = rows_of(account, since, until, n, after, desc)
        for r in rows:
            lk = Lookup.from_row(r)
            after = lk.id
            if where.match(lk, at):
                out.append(r)
                if len(out) == limit:
                    return out, after
        if len(rows) < n:
            return out, None
        scan -= n
    return out, after


def page_views(scan_of: Callable, names: Mapping[str, str], query: Query, limit: int) -> dict:
    """A page: {"items": [lookup views], "next": the cursor of the next page, or None}."""
    rows, nxt = scan_of(query, limit, PAGE_SCAN)
    at = time.time()
    items = [with_sms(lookup_view(Lookup.from_row(r), at, names), r) for r in rows]
    return {"items": items, "next": str(nxt) if nxt is not None else None}


def render_page(scan_of: Callable, names: Mapping[str, str], query: Query, limit: int) -> bytes:
    """A JSON page: {"items": [...], "next": id or null}."""
    return json.dumps(page_views(scan_of, names, query, limit), separators=(",", ":")).encode()


def render_csv(scan_of: Callable, names: Mapping[str, str], query: Query, limit: int,
               header: bool) -> tuple[bytes, int | None, int]:
    """Up to ``limit`` rows as CSV lines (the header first when ``header``): (bytes,
    the cursor of what follows or None at the end, rows)."""
    rows, nxt = scan_of(query, limit, CSV_SCAN)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if header:
        writer.writerow(LOOKUP_FIELDS)
    at = time.time()
    for r in rows:
        v = lookup_view(Lookup.from_row(r), at, names)
        writer.writerow(["" if v[k] is None else str(v[k]).lower() if isinstance(v[k], bool)
                         else v[k] for k in LOOKUP_FIELDS])
    return buf.getvalue().encode(), nxt, len(rows)


# ---------------------------------------------------------------- in a reader process

_scan_of: Callable | None = None
_names: Mapping[str, str] = {}


def open_reader_process(file: str, names: Mapping[str, str]) -> None:
    """A reader process starts: its own connection, and the CPU only when the server does
    not want it (Linux SCHED_IDLE: a lookup waking up takes the core at once; the lowest
    nice value elsewhere), so that a reader never holds up a lookup."""
    global _scan_of, _names
    _names = names
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass
    db = open_reader(file)
    db.execute("PRAGMA query_only=1")
    _scan_of = partial(scan_rows, partial(history_page, db), partial(history_scan, db))


#: What a reader renders, by the name the server asks for: process or thread, the same.
RENDERERS: dict[str, Callable[..., Any]] = {"page": render_page, "views": page_views, "csv": render_csv}


def render_in_reader_process(name: str, *args: Any) -> Any:
    """In a reader process (after ``open_reader_process``): ``name``'s rendering of args."""
    assert _scan_of is not None
    return RENDERERS[name](_scan_of, _names, *args)


# ---------------------------------------------------------------- on the loop


class HistoryReaders:
    """The pool that reads history for the HTTP API (started at the first read)."""

    def __init__(self, store, processes: int, network_names: Mapping[str, str]):
        self.store = store
        self.network_names = network_names
        self.processes = processes if isinstance(store, SQLiteStore) else 0
        self._procs = (ReaderProcesses(self.processes, str(store.file), network_names)
                       if self.processes else None)
        self._threads: ThreadPoolExecutor | None = None

    async def _run(self, name: str, *args: Any) -> Any:
        if self._procs is not None:
            return await self._procs.call(name, *args)
        # Threads: the same rendering, over the store's own (per-thread) readers.
        if self._threads is None:
            self._threads = ThreadPoolExecutor(2, thread_name_prefix="hlrsmpp-history")
        scan_of = partial(scan_rows, self.store.history, self.store.history_scan)
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, RENDERERS[name], scan_of, self.network_names, *args)

    async def page(self, query: Query, limit: int) -> bytes:
        """A JSON page of at most ``limit`` lookups, rendered."""
        return await self._run("page", Query(*query), limit)

    async def views(self, query: Query, limit: int) -> dict:
        """A page as data (for pages rendered elsewhere, e.g. HTML): {"items": [lookup
        views], "next": cursor or None}; the next page is ``after=next``."""
        return await self._run("views", Query(*query), limit)

    async def csv(self, query: Query, limit: int | None) -> AsyncIterator[bytes]:
        """Every matching lookup (or ``limit`` of them) as CSV, chunk after chunk; the
        next chunk is read while the caller writes this one."""
        query, left = Query(*query), limit

        def ask(after: int, header: bool) -> asyncio.Future:
            n = CSV_CHUNK if left is None else min(CSV_CHUNK, left)
            return asyncio.ensure_future(self._run("csv", query._replace(after=after), n, header))

        pending = ask(query.after, True)
        try:
            while True:
                data, nxt, count = await pending
                if left is not None:
                    left -= count
                more = nxt is not None and left != 0
                if more:
                    pending = ask(nxt, False)
                yield data
                if not more:
                    return
        finally:
            if not pending.done():
                pending.cancel()

    def close(self) -> None:
        if self._procs is not None:
            self._procs.close()
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None
