"""The per-day statistics: the history's lookups summed into the rollups beside the group
commit, a second at a time. Every lookup is summed exactly once, whatever the chunks, the
commits in between or a sum made twice; by day in the accounts' timezone; the same sums as
the shared store's rule of a commit (``domain.rollup``); reads add the lookups not summed
yet. A real SQLite store."""
from __future__ import annotations

import sqlite3
import tempfile
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlrsmpp.accounts import store as store_module
from hlrsmpp.accounts.calendar import Calendar
from hlrsmpp.accounts.store import MIGRATIONS, Store
from hlrsmpp.domain import ROLLUP_DIMENSIONS, rollup, rollup_dimensions, sum_rollup_rows
from hlrsmpp.ids import IdGenerator, time_of_id

# Three days around the end of summer time in Paris (the day of 25 hours in the middle).
START = 1761426000.0 - 86400   # 2025-10-25 00:00 +02:00, less a day
TZ = "Europe/Paris"

lookup = st.tuples(
    st.floats(0, 3 * 86400),                      # seconds after START
    st.sampled_from(["acme", "beta", "gamma"]),
    st.sampled_from(["44", "33", "91"]),
    st.sampled_from(["23410", "20801", "40493"]),
    st.booleans(),                                 # ported
    st.sampled_from(["", "23415"]),                # p_nnc
    st.sampled_from([0, 0, 11, 12, 14]),
    st.sampled_from([0, 100_000, 250_000]))


def _rows(drawn) -> list[tuple]:
    ids = IdGenerator()
    out = []
    for offset, sid, cc, nnc, ported, p_nnc, err, cost in sorted(drawn):
        i = ids.next(START + offset)
        t = time_of_id(i)   # a lookup's day is its id's
        out.append((i, None, sid, "smpp", "447700900000", t, t, cost, err, cc, nnc, int(ported),
                    p_nnc, 0, "", "", 0, 0))
    return out


def _table(store: Store) -> dict:
    db = sqlite3.connect(store.file)
    try:
        return {(sid, dim, value, day): [n, cost] for sid, dim, value, day, n, cost
                in db.execute("SELECT system_id, dim, value, day, count, cost FROM rollup_sums")}
    finally:
        db.close()


def _read_all(store: Store) -> dict:
    """Everything ``Store.rollups`` answers, per account and dimension."""
    return {(sid, by): store.rollups(sid, "2025-01-01", "2026-01-01", by)
            for sid in ("acme", "beta", "gamma") for by in ROLLUP_DIMENSIONS}


def _expected_reads(rows, cal) -> dict:
    sums = rollup_dimensions(rollup(rows, cal.span))
    out = {}
    for sid in ("acme", "beta", "gamma"):
        for by, dim in ROLLUP_DIMENSIONS.items():
            got: dict = {}
            for (s, d, value, day), (n, cost) in sums.items():
                if s == sid and d == dim:
                    key = day if dim == "d" else int(value) if dim == "s" else value
                    total = got.setdefault(key, [0, 0])
                    total[0] += n
                    total[1] += cost
            out[(sid, by)] = [(k, n, c) for k, (n, c) in sorted(got.items())]
    return out


def _settle(store: Store, newest: int) -> None:
    """Commits (empty ones, as an idle server's journal does when the store is due) until
    the rollups' mark reaches the newest lookup."""
    db = sqlite3.connect(store.file)
    try:
        for _ in range(400):
            if db.execute("SELECT mark FROM rollup_mark").fetchone()[0] >= newest:
                return
            store.commit([], [], [])
            time.sleep(store_module.ROLLUP_EVERY)
        raise AssertionError("the rollups' mark never reached the newest lookup")
    finally:
        db.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=st.lists(lookup, max_size=120), cuts=st.lists(st.integers(0, 120), max_size=6),
       failing=st.sets(st.integers(0, 6), max_size=2))
def test_the_sums_in_memory_claim_each_lookup_once_even_when_commits_fail(drawn, cuts, failing):
    """A server's store: the group commit counts its lookups in memory and claims them
    once a second; a commit that fails (here: a batch repeating an id) leaves its lookups
    counted in memory but not in the history, so the claim after it does not take and the
    rollups' thread sums that range from the history instead."""
    rows = _rows(drawn)
    cal = Calendar(TZ)
    store = Store(tempfile.mkdtemp(prefix="hlrsmpp-rollups-"))
    store.periods = cal
    every = store_module.ROLLUP_EVERY
    store_module.ROLLUP_EVERY = 0.02   # a claim a tick at most: a failing batch right after
    store.on_due(lambda: None)         # a claim is only counted, the next batch claims it
    try:
        bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
        written: list[tuple] = []
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            batch = rows[a:b]
            if k in failing:
                try:   # its last lookup has no account: the batch is refused whole
                    store.commit(batch[:-1] + [batch[-1][:2] + (None,) + batch[-1][3:]], [], [])
                except Exception:
                    pass
                else:
                    raise AssertionError("a lookup without an account was written")
                continue
            store.commit(batch, [], [])
            written += batch
            if k + 1 not in failing:
                time.sleep(0.025)
        if written:
            _settle(store, written[-1][0])
        assert _table(store) == dict(rollup_dimensions(rollup(written, cal.span)))
        assert _read_all(store) == _expected_reads(written, cal)
    finally:
        store_module.ROLLUP_EVERY = every
        store.close()


def test_a_claim_after_a_failed_commit_does_not_take_and_the_history_is_summed(tmp_path):
    """A batch refused after a claim left: its lookups are counted in memory, the next
    claim counts them too, the history does not hold them: that claim changes nothing,
    the rollups' thread sums the range from the history."""
    rows = _rows([(k * 100.0, "acme", "44", "23410", False, "", 0, 5) for k in range(30)])
    store = Store(tmp_path)
    store.periods = Calendar(TZ)
    every = store_module.ROLLUP_EVERY
    store_module.ROLLUP_EVERY = 0.02
    store.on_due(lambda: None)
    try:
        store.commit(rows[:10], [], [])            # claimed at once
        bad = rows[10:20]
        try:
            store.commit(bad[:-1] + [bad[-1][:2] + (None,) + bad[-1][3:]], [], [])
        except Exception:
            pass
        time.sleep(0.1)                            # the first claim seen through
        store.commit(rows[20:], [], [])            # claims 10 + 10 lookups, 10 written
        _settle(store, rows[-1][0])
        written = rows[:10] + rows[20:]
        assert _table(store) == dict(rollup_dimensions(rollup(written, store.periods.span)))
    finally:
        store_module.ROLLUP_EVERY = every
        store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=st.lists(lookup, max_size=120), cuts=st.lists(st.integers(0, 120), max_size=6),
       limits=st.lists(st.integers(1, 50), min_size=1, max_size=4), stale_at=st.integers(0, 6))
def test_every_lookup_is_summed_once_whatever_the_chunks(drawn, cuts, limits, stale_at):
    rows = _rows(drawn)
    cal = Calendar(TZ)
    store = Store(tempfile.mkdtemp(prefix="hlrsmpp-rollups-"))
    store.periods = cal
    every = store_module.ROLLUP_EVERY
    store_module.ROLLUP_EVERY = 0.001
    store.on_due(lambda: None)   # the store's own thread sums concurrently as well
    try:
        bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
        stale = []
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            store.commit(rows[a:b], [], [])
            steps = store.rollups_due(limit=limits[k % len(limits)])
            if steps is not None:
                stale.append(steps)
                store.transaction(steps)
            if k == stale_at and stale:
                store.transaction(stale[0])   # made from a mark that has moved: changes nothing
            # Reads count what is summed and what is not yet, never twice.
            assert _read_all(store) == _expected_reads(rows[:b], cal)
        for steps in stale:
            store.transaction(steps)
        store.catch_up_rollups()
        assert _table(store) == {k: v for k, v in rollup_dimensions(rollup(rows, cal.span)).items()}
        assert store.rollups_due() is None
    finally:
        store_module.ROLLUP_EVERY = every
        store.close()


def test_a_store_of_the_per_commit_rollups_keeps_them(tmp_path):
    """A store whose commits summed their own lookups (before the rollups' mark) keeps its
    sums: nothing is summed twice, the lookups after it are summed."""
    file = tmp_path / "hlrsmpp.sqlite3"
    db = sqlite3.connect(file, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:8], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    cal = Calendar("UTC")
    old = _rows([(0.0, "acme", "44", "23410", False, "", 0, 100_000)])
    db.execute(f"INSERT INTO lookups VALUES ({', '.join('?' * 18)})", old[0])
    for key, (n, cost) in rollup_dimensions(rollup(old, cal.span)).items():
        db.execute("INSERT INTO rollup_sums VALUES (?, ?, ?, ?, ?, ?)", key + (n, cost))
    db.close()

    store = Store(tmp_path)
    try:
        assert store.rollups_due() is None
        before = _table(store)
        new = [(old[0][0] + 1,) + old[0][1:]]
        store.commit(new, [], [])
        store.catch_up_rollups()
        assert {k: v[0] for k, v in _table(store).items()} == {k: v[0] * 2 for k, v in before.items()}
    finally:
        store.close()


@settings(max_examples=200, deadline=None)
@given(drawn=st.lists(lookup, max_size=60), start=st.integers(-2, 70), end_at=st.integers(0, 70))
def test_the_c_tally_sums_as_its_python_twin(drawn, start, end_at):
    native = store_module._native
    if native is None:
        import pytest
        pytest.skip("the C modules are not built (HLRSMPP_PURE_PYTHON)")
    rows = _rows(drawn)
    end_id = rows[end_at][0] if end_at < len(rows) else 1 << 62
    seed = {("acme", "44", "23410", 0): [3, 7]}
    c_sums, py_sums = {k: list(v) for k, v in seed.items()}, {k: list(v) for k, v in seed.items()}
    assert native.sum_rollups(c_sums, rows, start, end_id) == \
        sum_rollup_rows(py_sums, rows, start, end_id)
    assert c_sums == py_sums
