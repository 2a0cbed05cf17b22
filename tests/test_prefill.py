"""The prefill fills a store with realistic lookups in the server's own row layout."""
import time

import pytest

from hlrsmpp.accounts.store import Store
from hlrsmpp.bench.prefill import prefill
from hlrsmpp.domain import Lookup
from hlrsmpp.ids import EPOCH_MS


def test_prefill_rows_are_history_the_server_reads(tmp_path):
    t0 = time.time()
    out = prefill(tmp_path, 5000, days=10, accounts=7)
    assert out["rows"] == out["total_rows"] == 5000
    store = Store(tmp_path)
    try:
        rows = store.history(limit=10_000)
        assert len(rows) == 5000
        ids = [r["id"] for r in rows]
        assert ids == sorted(set(ids))
        for r in rows[:50]:
            lk = Lookup.from_row(r)
            # the id begins with its millisecond, as the server's ids do
            assert abs((lk.id >> 22) + EPOCH_MS - lk.submitted * 1000) <= 1
            assert lk.done >= lk.submitted
        assert t0 - 10 * 86400 - 1 <= rows[0]["submitted"] < rows[-1]["submitted"] <= time.time()
        assert {r["system_id"] for r in rows} <= {f"acct{i:03d}" for i in range(7)}
        assert len({r["system_id"] for r in rows}) >= 5
        assert {r["channel"] for r in rows} == {"smpp", "http"}
        assert len({r["cc"] for r in rows}) >= 10
        assert {r["err"] for r in rows} > {0}
        batch = next(r["batch_id"] for r in rows if r["batch_id"] is not None)
        assert all(r["batch_id"] == batch for r in store.batch(batch))
        # a history page of one account, newest first, as the API asks it
        page = store.history("acct000", limit=20, newest_first=True)
        assert len(page) == 20 and page[0]["id"] > page[-1]["id"]
    finally:
        store.close()


def test_prefill_refuses_to_interleave_with_recent_history(tmp_path):
    prefill(tmp_path, 100, days=1)
    with pytest.raises(ValueError, match="already holds"):
        prefill(tmp_path, 100, days=1)


def test_repeat_copies_a_store_back_in_time_in_id_order(tmp_path):
    from hlrsmpp.bench.prefill import repeat
    prefill(tmp_path / "one", 1000, days=2, accounts=3)
    out = repeat(tmp_path / "three", tmp_path / "one", 3)
    assert out["total_rows"] == 3000
    store = Store(tmp_path / "three")
    try:
        rows = store.history(limit=10_000)
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)) == 3000
        span = rows[-1]["submitted"] - rows[0]["submitted"]
        assert 5.9 * 86400 < span <= 6 * 86400 + 1
        for r in rows[::97]:
            assert abs((r["id"] >> 22) + EPOCH_MS - r["submitted"] * 1000) <= 1
    finally:
        store.close()
