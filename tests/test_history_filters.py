"""History filters (status, error, country, network, number prefix) on the JSON API, its
CSV export and the console's past requests: over a prefilled store of realistic lookups,
every page followed to the end gives exactly the lookups that match, in order, though a
page reads a bounded part of the history and may come back short with a cursor."""
from __future__ import annotations

import base64
import csv
import io
import re
import shutil
import sqlite3
import time

import aiohttp
import pytest

from hlrsmpp.accounts.store import Store
from hlrsmpp.bench.prefill import prefill
from hlrsmpp.domain import Lookup
from hlrsmpp.server.http.history import PAGE_SCAN, HistoryFilter, Query, scan_rows

from console_client import Console, console_session

pytestmark = pytest.mark.e2e

ACCOUNTS = [{"system_id": "acct000", "password": "pw-zero", "credit": 10},
            {"system_id": "acct001", "password": "pw-one", "credit": 10}]
#: acct000 gets about two thirds of them: more than a filtered page reads.
ROWS = int(PAGE_SCAN * 2.4)


@pytest.fixture(scope="module")
def prefilled(tmp_path_factory):
    """A store of ROWS lookups of acct000 and acct001, every result in (done in the past)."""
    data = tmp_path_factory.mktemp("prefilled")
    prefill(data, ROWS, days=1, accounts=2, pool=3000)
    db = sqlite3.connect(data / "hlrsmpp.sqlite3")
    past = time.time() - 1
    db.execute("UPDATE lookups SET done = ? WHERE done > ?", (past, past))
    db.commit()
    db.close()
    return data


def _copy(prefilled, tmp_path) -> None:
    (tmp_path / "data").mkdir()
    shutil.copy(prefilled / "hlrsmpp.sqlite3", tmp_path / "data" / "hlrsmpp.sqlite3")


def _rows(data, system_id: str) -> list[tuple]:
    db = sqlite3.connect(data / "hlrsmpp.sqlite3")
    try:
        return db.execute("SELECT id, msisdn, err, cc, nnc, ported, p_nnc FROM lookups "
                          "WHERE system_id = ? ORDER BY id DESC", (system_id,)).fetchall()
    finally:
        db.close()


def _expected(rows: list[tuple], f: dict) -> list[str]:
    """The matching ids, newest first, worked out here from the rows themselves."""
    out = []
    for lid, msisdn, err, cc, nnc, ported, p_nnc in rows:
        network = p_nnc if ported and p_nnc else nnc
        if (("status" not in f or (f["status"] == "DELIVRD") == (err == 0))
                and ("err" not in f or err == int(f["err"])) and ("cc" not in f or cc == f["cc"])
                and ("network" not in f or network == f["network"])
                and ("prefix" not in f or msisdn.startswith(f["prefix"].lstrip("+")))):
            out.append(str(lid))
    return out


def _filters(rows: list[tuple]) -> list[dict]:
    """Filters of every kind, rare and common, on values the rows hold."""
    ported = next(p_nnc for *_, ported, p_nnc in rows if ported and p_nnc)
    rare_err = min({r[2] for r in rows if r[2]}, key=lambda e: sum(1 for r in rows if r[2] == e))
    return [{"status": "UNDELIV", "cc": "49"}, {"status": "DELIVRD", "prefix": "+4474"},
            {"err": str(rare_err)}, {"network": ported}, {"prefix": "91"}, {"cc": "999"}]


async def _api_pages(session, base: str, auth, params: dict) -> tuple[list[str], int]:
    """Every page of the JSON history, cursor after cursor: (ids, pages that were short
    and yet had a next one)."""
    ids, short, after = [], 0, "0"
    while True:
        async with session.get(f"{base}/api/v1/history", headers=auth, params={
                **params, "order": "desc", "limit": "100", "after": after}) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        ids += [v["id"] for v in page["items"]]
        if page["next"] is None:
            return ids, short
        short += len(page["items"]) < 100
        after = page["next"]


@pytest.mark.parametrize("readers", [2, 0], ids=["reader-processes", "threads"])
async def test_the_json_history_and_its_csv_keep_the_filtered_lookups_only(make_server, tmp_path,
                                                                          prefilled, readers):
    _copy(prefilled, tmp_path)
    st = make_server(ACCOUNTS, history={"readers": readers})
    rows = _rows(prefilled, "acct000")
    auth = {"Authorization": "Basic " + base64.b64encode(b"acct000:pw-zero").decode()}
    base = f"http://127.0.0.1:{st.http_port}"
    short_pages = 0
    async with aiohttp.ClientSession() as s:
        for f in _filters(rows):
            want = _expected(rows, f)
            got, short = await _api_pages(s, base, auth, f)
            assert got == want, f
            short_pages += short
            async with s.get(f"{base}/api/v1/history", headers=auth,
                             params={**f, "format": "csv", "order": "desc"}) as r:
                assert r.status == 200
                table = list(csv.DictReader(io.StringIO(await r.text())))
            assert [row["id"] for row in table] == want, f
        # The rare error's first pages read PAGE_SCAN rows each and came back short.
        assert short_pages >= 1


async def test_bad_filters_are_refused_with_the_reason(make_server):
    st = make_server(ACCOUNTS)
    auth = {"Authorization": "Basic " + base64.b64encode(b"acct000:pw-zero").decode()}
    async with aiohttp.ClientSession() as s:
        for params, words in (({"status": "LOST"}, "status: expected DELIVRD, UNDELIV or ENROUTE"),
                              ({"err": "1000"}, "err: expected an error code"),
                              ({"cc": "4a"}, "cc: expected a country calling code"),
                              ({"network": "2341"}, "network: expected MCC+MNC"),
                              ({"prefix": "44 74"}, "prefix: expected the first digits")):
            async with s.get(f"http://127.0.0.1:{st.http_port}/api/v1/history", headers=auth, params=params) as r:
                assert r.status == 400 and words in (await r.json())["error"]["message"], params


def test_sqlite_and_the_row_by_row_scan_give_the_same_pages(prefilled, tmp_path):
    """A store without SQL (Redis) filters row by row: the same pages, the same cursors,
    ENROUTE (results not in yet) included."""
    shutil.copytree(prefilled, tmp_path / "data")
    db = sqlite3.connect(tmp_path / "data" / "hlrsmpp.sqlite3")
    db.execute("UPDATE lookups SET done = ? WHERE id IN (SELECT id FROM lookups ORDER BY id DESC LIMIT 300)",
               (time.time() + 3600,))
    db.commit()
    db.close()
    store = Store(tmp_path / "data")
    try:
        filters = [HistoryFilter.parse(f) for f in _filters(_rows(tmp_path / "data", "acct000"))]
        filters += [HistoryFilter(status="ENROUTE"), HistoryFilter(status="DELIVRD", cc="44"),
                    HistoryFilter(err=0, network="23410")]
        for where in filters:
            for desc in (True, False):
                query, pages = Query("acct000", None, None, 0, desc, where), 0
                while True:
                    sql = scan_rows(store.history, store.history_scan, query, 37, 500)
                    rows = scan_rows(store.history, None, query, 37, 500)
                    assert [r["id"] for r in sql[0]] == [r["id"] for r in rows[0]] and sql[1] == rows[1], where
                    assert all(where.match(Lookup.from_row(r), time.time())
                               for r in sql[0])
                    pages += 1
                    if sql[1] is None:
                        break
                    query = query._replace(after=sql[1])
                assert pages >= 2
    finally:
        store.close()


def _ids(page: str) -> list[str]:
    return re.findall(r'<tr data-id="(\d+)"', page)


async def test_the_console_filters_past_requests_pages_on_and_downloads_the_same(make_server, tmp_path,
                                                                               prefilled):
    _copy(prefilled, tmp_path)
    st = make_server(ACCOUNTS)
    rows = _rows(prefilled, "acct000")
    f = {"status": "UNDELIV", "cc": "49"}
    want = _expected(rows, f)
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acct000", "pw-zero")
        got, path = [], "/console/history?status=UNDELIV&cc=49"
        while True:
            status, page, _ = await c.get(path)
            assert status == 200
            assert 'value="UNDELIV" selected' in page and 'value="49"' in page
            got += _ids(page)
            older = re.search(r'<a rel="next" href="([^"]+)"', page)
            if older is None:
                break
            path = older.group(1).replace("&amp;", "&")
            assert "status=UNDELIV" in path and "cc=49" in path   # paging keeps the filter
        assert got == want
        csv_link = re.search(r'id="csv" href="([^"]+)"', page).group(1).replace("&amp;", "&")
        assert "status=UNDELIV" in csv_link and "cc=49" in csv_link
        status, text, _ = await c.get(csv_link)
        assert status == 200 and [r["id"] for r in csv.DictReader(io.StringIO(text))] == want
        status, page, _ = await c.get("/console/history?network=abc")
        assert status == 400 and "network: expected MCC+MNC" in page
        status, _, _ = await c.get("/console/history.csv?status=LOST")
        assert status == 400
    # The other account, with the same filter (and asking for acct000's), sees its own only.
    theirs = set(_expected(rows, {"prefix": "4"}))
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acct001", "pw-one")
        status, page, _ = await c.get("/console/history?prefix=4&account=acct000")
        assert status == 200 and _ids(page) and not theirs & set(_ids(page))
        _, text, _ = await c.get("/console/history.csv?prefix=4&account=acct000")
        assert not theirs & {r["id"] for r in csv.DictReader(io.StringIO(text))}


def test_a_filtered_page_reads_its_bounded_range_only_whatever_the_filter(prefilled):
    """The work (SQLite VM steps) of a page with a filter nothing matches: a bounded range
    of the account's keyset, newest or oldest first, not every row of the account."""
    from hlrsmpp.accounts.store import history_scan, open_reader

    db = open_reader(prefilled / "hlrsmpp.sqlite3")
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(count, 100)
    nothing = HistoryFilter(prefix="999999").sql(time.time())
    try:
        for desc in (True, False):
            work = []
            for scan in (500, ROWS):
                steps[0] = 0
                rows, nxt = history_scan(db, "acct000", None, None, 50, 0, desc, nothing, scan)
                assert rows == [] and (nxt is None) == (scan == ROWS)
                work.append(steps[0])
            assert work[0] * 5 < work[1], (desc, work)   # about 500 rows read, not about 16,000
    finally:
        db.close()
