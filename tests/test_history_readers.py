"""History over HTTP is read off the event loop: by reader processes of their own, each
with its own SQLite connection, chunk by chunk. Real server, real client, real SQLite."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from http_client import ApiClient, clients
from hlrsmpp.bench.prefill import prefill
from hlrsmpp.server.http.history import CSV_CHUNK

TOKEN = "s3cr3t-admin"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ROWS = 2 * CSV_CHUNK + 345   # the export crosses chunk boundaries


def _readers_holding(db: Path) -> list[int]:
    """Child processes of this one that have the store's file open."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != me:
                continue
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == str(db) for fd in fds):
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


async def _export(st, **params) -> tuple[int, str]:
    async with clients(ApiClient) as factory:
        client = await factory(st)
        status, text, _ = await client.call("GET", "/history", ADMIN, params={"format": "csv", **params})
        return status, text


async def test_history_is_read_by_reader_processes_with_their_own_connection(make_server, tmp_path):
    prefill(tmp_path / "data", ROWS, days=3, accounts=5)
    st = make_server(admin={"token": TOKEN}, history={"readers": 1})
    status, text = await _export(st)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == ROWS
    ids = [int(r["id"]) for r in rows]
    assert ids == sorted(set(ids))
    # The rows were read, and rendered, by a process of its own, not the server's, which
    # runs only when the server leaves a core idle.
    readers = _readers_holding((tmp_path / "data" / "hlrsmpp.sqlite3").resolve())
    assert readers and all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in readers)
    # A limit and a start (`after`) across chunk boundaries.
    status, text = await _export(st, limit=str(CSV_CHUNK + 7), after=str(ids[100]))
    part = [int(r["id"]) for r in csv.DictReader(io.StringIO(text))]
    assert part == ids[101:101 + CSV_CHUNK + 7]
    # JSON pages, newest first, from the same readers.
    async with clients(ApiClient) as factory:
        client = await factory(st)
        status, page, _ = await client.call("GET", "/history", ADMIN, params={"order": "desc", "limit": "3"})
    assert status == 200 and [int(i["id"]) for i in page["items"]] == ids[-1:-4:-1]
    assert page["next"] == str(ids[-3])


async def test_history_on_threads_gives_the_same_export(make_server, tmp_path):
    prefill(tmp_path / "data", CSV_CHUNK + 10, days=1, accounts=3)
    st = make_server(admin={"token": TOKEN}, history={"readers": 1})
    _, by_process = await _export(st, account="acct001")
    st.stop()
    st = make_server(admin={"token": TOKEN}, history={"readers": 0})
    _, by_thread = await _export(st, account="acct001")
    assert by_process == by_thread
    assert len(by_thread.splitlines()) > 100
    assert not _readers_holding((tmp_path / "data" / "hlrsmpp.sqlite3").resolve())


def test_an_account_page_reads_that_accounts_rows_only(tmp_path):
    """Keyset pages of one account stay cheap among many other rows: they walk the
    account's spans (from the cursor, in both orders) and read the rows in them only,
    far less than every row; and they hold exactly the account's lookups, in order."""
    from hlrsmpp.accounts.store import _HISTORY_COLUMNS, Store, history_page, open_reader
    prefill(tmp_path, 40000, days=2, accounts=50)
    Store(tmp_path).close()
    db = open_reader(tmp_path / "hlrsmpp.sqlite3")
    rare = "acct049"
    want = [r[0] for r in db.execute("SELECT id FROM lookups WHERE system_id = ? ORDER BY id", (rare,))]
    assert 100 < len(want) < 1000
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(count, 100)
    seen: list[str] = []
    for desc in (False, True):
        steps[0] = 0
        db.set_trace_callback(seen.append)
        first = history_page(db, rare, limit=5, newest_first=desc)
        rest = history_page(db, rare, limit=1000, after_id=first[-1]["id"], newest_first=desc)
        db.set_trace_callback(None)
        assert [r["id"] for r in first + rest] == (want[::-1] if desc else want)
        paged = steps[0]
        steps[0] = 0
        db.execute(f"SELECT {_HISTORY_COLUMNS} FROM lookups WHERE system_id = ?", (rare,)).fetchall()
        assert paged * 4 < steps[0], (desc, paged, steps[0])
    db.set_progress_handler(None, 0)
    for sql in seen:
        plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "SCAN" not in plan, plan


async def test_a_page_as_data_from_the_readers_follows_its_cursor(tmp_path):
    from hlrsmpp.accounts.store import Store
    from hlrsmpp.server.http.history import HistoryReaders
    prefill(tmp_path, 250, days=1, accounts=3)
    store = Store(tmp_path)
    want = [str(r["id"]) for r in store.history("acct002", limit=1000, newest_first=True)]
    for processes in (1, 0):
        readers = HistoryReaders(store, processes, {})
        try:
            got, after = [], 0
            while True:
                page = await readers.views(("acct002", None, None, after, True), 7)
                got += [v["id"] for v in page["items"]]
                assert all(v["account"] == "acct002" for v in page["items"])
                if page["next"] is None:
                    break
                after = int(page["next"])
            assert got == want
        finally:
            readers.close()
    store.close()


async def test_a_reader_killed_is_replaced_and_its_read_asked_again(make_server, tmp_path):
    """A reader process that dies (here kill -9) costs nobody an answer: the page it was
    asked is asked again of a new reader, and the dead one leaves no process behind."""
    import signal

    prefill(tmp_path / "data", 3000, days=1, accounts=3)
    st = make_server(admin={"token": TOKEN}, history={"readers": 1})
    db = (tmp_path / "data" / "hlrsmpp.sqlite3").resolve()
    async with clients(ApiClient) as factory:
        client = await factory(st)
        status, first, _ = await client.call("GET", "/history", ADMIN, params={"limit": "5"})
        assert status == 200
        [reader] = _readers_holding(db)
        os.kill(reader, signal.SIGKILL)
        for _ in range(3):
            status, page, _ = await client.call("GET", "/history", ADMIN, params={"limit": "5"})
            assert status == 200 and page == first
        [again] = _readers_holding(db)
        assert again != reader
        status, text = await _export(st)
        assert status == 200 and len(text.splitlines()) == 3001
    st.stop()
    assert not _readers_holding(db)
