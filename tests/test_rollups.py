"""The per-day statistics: the history's lookups summed into the rollups beside the group
commit, a second at a time. Every lookup is summed exactly once, whatever the chunks, the
commits in between or a sum made twice; by day in the accounts' timezone; the same sums as
the shared store's rule of a commit (``domain.rollup``); reads add the lookups not summed
yet. A real SQLite store."""
from __future__ import annotations

import sqlite3
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlrsmpp.accounts import store as store_module
from hlrsmpp.accounts.calendar import Calendar
from hlrsmpp.accounts.store import MIGRATIONS, Store
from hlrsmpp.domain import ROLLUP_DIMENSIONS, rollup, rollup_dimensions
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
