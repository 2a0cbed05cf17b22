"""Where each account's lookups are: spans written by the group commit, read by pages."""
from __future__ import annotations

import sqlite3

from hypothesis import HealthCheck, given, settings, strategies as st

from hlrsmpp.accounts.spans import DENSITY, SAVE_STRAY, SLACK, AccountSpans
from hlrsmpp.accounts.store import MIGRATIONS, Store, history_page, history_scan
from hlrsmpp.domain import LOOKUP_COLUMNS

ACCOUNTS = ("big", "mid", "rare")


def _row(lookup_id: int, account: str, err: int = 0) -> tuple:
    values = dict.fromkeys(LOOKUP_COLUMNS, 0)
    values.update(id=lookup_id, batch_id=None, system_id=account, channel="smpp", msisdn=f"4477009{lookup_id:08d}",
                  err=err, cc="44", nnc="23410", p_nnc="", r_cc="", r_nnc="", map_error=None, pending=0)
    return tuple(values[c] for c in LOOKUP_COLUMNS)


# A commit: its lookups' accounts in order, and how many of them were taken a commit
# earlier (answered late: their ids are below the previous commit's last).
commit = st.tuples(st.lists(st.sampled_from(ACCOUNTS + ("big",) * 6), min_size=1, max_size=40),
                   st.integers(0, 3))


def _commits(drawn: list[tuple[list[str], int]]) -> list[list[tuple]]:
    """Commits of rows with ids growing, some ids of the previous commit's range."""
    out: list[list[tuple]] = []
    next_id, held = 1000, []
    for accounts, late in drawn:
        ids = [next_id + 10 * k for k in range(len(accounts))]
        next_id += 10 * len(accounts) + 10
        late_ids = held[:late]
        rows = [_row(i, a, err=i % 3) for i, a in zip(late_ids + ids, accounts)]
        held = [i + 5 for i in ids]   # ids the next commit may take late
        out.append(rows)
    return out


def _spans(store: Store) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list] = {}
    for account, lo, hi in store._reader().execute("SELECT account, lo, hi FROM account_spans ORDER BY account, lo"):
        out.setdefault(account, []).append((lo, hi))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(commit, min_size=1, max_size=25), limit=st.integers(1, 30), scan=st.integers(1, 50))
def test_pages_through_spans_are_exactly_the_accounts_lookups(tmp_path_factory, drawn, limit, scan):
    """Whatever the mix of accounts and late answers, an account's spans never overlap,
    hold all its lookups, and its pages (both orders, any size, with a filter and a scan
    bound) give exactly its lookups in id order, as a scan of every row does."""
    store = Store(tmp_path_factory.mktemp("spans"))
    try:
        for rows in _commits(drawn):
            store.commit(rows, [], [])
        db = store._reader()
        spans = _spans(store)
        for account in ACCOUNTS:
            want = [r[0] for r in db.execute("SELECT id FROM lookups NOT INDEXED WHERE system_id = ? ORDER BY id",
                                             (account,))]
            theirs = spans.get(account, [])
            assert all(a[1] < b[0] for a, b in zip(theirs, theirs[1:])), theirs
            assert all(any(lo <= i <= hi for lo, hi in theirs) for i in want)
            for desc in (False, True):
                got, after = [], 0
                while page := history_page(db, account, limit=limit, after_id=after, newest_first=desc):
                    got += [r["id"] for r in page]
                    after = page[-1]["id"]
                assert got == (want[::-1] if desc else want)
                # A filter (err = 1) with a scan bound: the same rows, page after page.
                matching = [i for i in want if i % 3 == 1]
                got, after = [], 0
                while True:
                    rows, nxt = history_scan(db, account, None, None, limit, after, desc, ("err = ?", [1]), scan)
                    got += [r["id"] for r in rows]
                    if nxt is None:
                        break
                    after = nxt
                assert got == (matching[::-1] if desc else matching)
    finally:
        store.close()


def test_a_busy_account_has_few_spans_a_rare_one_tight_spans():
    """The rule of growth: an account with most of the traffic keeps one span; one with
    a lookup now and then gets a span per lookup, not one covering everyone's rows."""
    spans = AccountSpans()
    next_id, written = 0, {}
    for c in range(200):
        rows = []
        for k in range(100):
            rows.append((next_id, "rare" if k == 50 and c % 10 == 0 else "busy"))
            next_id += 1
        upserts, strays = spans.add(rows, 1)
        assert strays == []
        for account, lo, hi in upserts:
            written[(account, lo)] = hi
    busy = [(lo, hi) for (a, lo), hi in written.items() if a == "busy"]
    rare = [(lo, hi) for (a, lo), hi in written.items() if a == "rare"]
    assert busy == [(0, next_id - 1)]
    assert len(rare) == 20 and all(lo == hi for lo, hi in rare)
    # Rows of two accounts, one in five of one: spans cover at most DENSITY rows per
    # row of their account, plus SLACK, plus a commit.
    spans = AccountSpans()
    mixed = [(i, "a" if i % 5 == 0 else "b") for i in range(5000)]
    out: dict[tuple[str, int], int] = {}
    for k in range(0, 5000, 37):
        for account, lo, hi in spans.add(mixed[k:k + 37], 1)[0]:
            out[(account, lo)] = hi
    for (account, lo), hi in out.items():
        own = sum(1 for i, a in mixed if a == account and lo <= i <= hi)
        assert hi - lo + 1 <= DENSITY * own + SLACK + 37, (account, lo, hi, own)


def test_a_span_does_not_swallow_a_gap_however_busy_its_account_was():
    """An account alone for 10,000 rows, then 50,000 rows of another, then one lookup of
    the first: a new span, not the first one stretched over the other's 50,000."""
    spans = AccountSpans()
    rows = [(i, "was_busy") for i in range(10_000)] + [(i, "other") for i in range(10_000, 60_000)]
    for k in range(0, len(rows), 250):
        spans.add(rows[k:k + 250], 1)
    upserts, _ = spans.add([(60_000, "was_busy")], 1)
    assert upserts == [("was_busy", 60_000, 60_000)]


def test_a_lookup_below_its_accounts_open_span_is_found_once():
    """A lookup written after others of its account with higher ids (ids are taken in the
    order rows are written, so never yet): a span of its own, or none if one holds it."""
    spans = AccountSpans()
    assert spans.add([(100, "a")], 1) == ([("a", 100, 100)], [])
    assert spans.add([(i, "b") for i in range(101, 201)], 1) == ([("b", 101, 200)], [])
    assert spans.add([(300, "a")], 1) == ([("a", 300, 300)], [])
    assert spans.add([(350, "a"), (150, "a")], 1) == ([("a", 300, 350)], [("a", 150)])


def test_a_stray_lookup_gets_a_span_only_where_none_holds_it(tmp_path):
    store = Store(tmp_path)
    try:
        store.commit([_row(100, "a")] + [_row(i, "b") for i in range(101, 201)], [], [])
        store.commit([_row(300, "a")], [], [])
        store.commit([_row(350, "a"), _row(250, "a")], [], [])   # 250: in no span of a
        assert _spans(store)["a"] == [(100, 100), (250, 250), (300, 350)]
        db = store._reader()
        writer = store._connect()
        writer.execute("DELETE FROM lookups WHERE id = 250")
        writer.execute(SAVE_STRAY, ("a", 100))   # held already: no span
        writer.execute(SAVE_STRAY, ("a", 320))
        writer.close()
        assert _spans(store)["a"] == [(100, 100), (250, 250), (300, 350)]
        assert [r["id"] for r in history_page(db, "a", limit=10)] == [100, 300, 350]
    finally:
        store.close()


def test_a_store_from_before_spans_gets_them_at_start_and_loses_the_index(tmp_path):
    """A store of the per-lookup index: at the first start its lookups get their spans
    (in id order, as commits would have written them), the index goes, and pages read
    the same rows as before."""
    file = tmp_path / "hlrsmpp.sqlite3"
    db = sqlite3.connect(file, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:10], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    rows = [_row(1000 + i, "rare" if i % 97 == 0 else ACCOUNTS[i % 2]) for i in range(3000)]
    db.executemany(f"INSERT INTO lookups VALUES ({', '.join('?' * len(LOOKUP_COLUMNS))})", rows)
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'lookups_account'").fetchone()[0] == 1
    db.close()

    store = Store(tmp_path)
    try:
        db = store._reader()
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'lookups_account'").fetchone()[0] == 0
        for account in ACCOUNTS:
            want = [r[0] for r in rows if r[2] == account]
            assert [r["id"] for r in history_page(db, account, limit=5000)] == want
        # The lookups the server writes next are found too.
        store.commit([_row(9000, "rare"), _row(9001, "big")], [], [])
        assert [r["id"] for r in history_page(db, "rare", limit=2, newest_first=True)] == [9000, 3910]
    finally:
        store.close()
    # And a start with every span there writes none again.
    before = _spans(Store(tmp_path))
    again = Store(tmp_path)
    try:
        assert _spans(again) == before
    finally:
        again.close()
