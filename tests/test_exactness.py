"""Credit and history stay exact: 100,000 lookups from 4 concurrent
sessions, and the same with a kill -9 of the server in the middle of the run.

A real ``hlrsmpp serve`` process on SQLite; the load comes from ``hlrsmpp bench``'s
generator (4 transmitters and a receiver on one prepaid account); the audit reads
the store itself.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from decimal import Decimal

import pytest
import yaml

from conftest import ServerProcess, free_port
from hlrsmpp.bench.load import BenchConfig, bench

pytestmark = pytest.mark.slow  # 100,000 lookups, kill -9 and restart

COUNT = 100_000
CREDIT = Decimal(50_000)
PRICE = 100_000  # micro-credits: 0.1


def _config(tmp_path):
    cfg = {"smpp": {"host": "127.0.0.1", "window": 256}, "http": {"host": "127.0.0.1"},
           "storage": {"path": str(tmp_path / "data")},
           "log": {"format": "json", "level": "warning"},
           "accounts": [{"system_id": "load", "password": "load", "credit": str(CREDIT), "price": 0.1}]}
    path = tmp_path / "hlrsmpp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _audit(tmp_path) -> dict:
    db = sqlite3.connect(tmp_path / "data" / "hlrsmpp.sqlite3")
    n, cost, refunded, distinct = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(cost), 0), COALESCE(SUM(cost = 0), 0), COUNT(DISTINCT id) "
        "FROM lookups WHERE system_id = 'load'").fetchone()
    record = json.loads(db.execute("SELECT record FROM accounts WHERE system_id = 'load'").fetchone()[0])
    db.close()
    credit = sum(Decimal(p["credit"]) for p in record["packages"])
    return {"lookups": n, "distinct": distinct, "cost": cost, "refunded": refunded, "credit": credit}


def _assert_exact(a: dict) -> None:
    assert a["distinct"] == a["lookups"]
    # Every recorded lookup charged once (refunded ones cost 0), nothing charged unrecorded.
    assert a["cost"] == (a["lookups"] - a["refunded"]) * PRICE
    assert CREDIT - a["credit"] == Decimal(a["cost"]) / 1_000_000


def _load(port: int, count: int) -> BenchConfig:
    return BenchConfig(port=port, system_id="load", password="load", mode="tx+rx", sessions=4,
                       window=64, count=count, drain_timeout=60, pool=50_000)


@pytest.mark.timeout(300)
def test_100k_lookups_from_4_sessions_leave_credit_and_history_exact(tmp_path):
    proc = ServerProcess(_config(tmp_path), free_port(), free_port()).start()
    try:
        result = bench(_load(proc.smpp_port, COUNT))
    finally:
        assert proc.terminate() == 0, proc.output()[-2000:]
    assert result["submit_ok"] == result["receipts"] == COUNT, result
    assert not result["errors"]
    audit = _audit(tmp_path)
    assert audit["lookups"] == COUNT
    _assert_exact(audit)


@pytest.mark.timeout(300)
def test_kill_9_mid_run_then_restart_leaves_credit_and_history_exact(tmp_path):
    cfg = _config(tmp_path)
    smpp, http = free_port(), free_port()
    proc = ServerProcess(cfg, smpp, http).start()
    outcome: dict = {}

    def load() -> None:
        try:
            outcome["result"] = bench(_load(smpp, COUNT))
        except BaseException as err:  # the server dies under it: expected
            outcome["error"] = err

    runner = threading.Thread(target=load, daemon=True)
    runner.start()
    db_file = tmp_path / "data" / "hlrsmpp.sqlite3"
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline:
        try:
            db = sqlite3.connect(db_file)
            seen = db.execute("SELECT COUNT(*) FROM lookups").fetchone()[0]
            db.close()
        except sqlite3.Error:
            pass
        if seen >= COUNT // 3:
            break
        time.sleep(0.05)
    assert seen >= COUNT // 3, "the load did not get going"
    proc.kill()  # mid-run, lookups and acks in flight
    runner.join(120)
    # Restart on the same data, let it replay, stop cleanly: the store must add up.
    proc = ServerProcess(cfg, smpp, http).start()
    assert proc.terminate() == 0, proc.output()[-2000:]
    audit = _audit(tmp_path)
    assert COUNT // 3 <= audit["lookups"] < COUNT
    _assert_exact(audit)
