"""The console's page-timing bench runs: on a tiny prefilled store it spawns a server,
logs in as the customer and the operator and reports every page, each answered 200 (the
figures themselves are not checked: a test never asserts a speed)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hlrsmpp.bench.prefill import prefill

pytestmark = pytest.mark.e2e


def test_the_console_bench_times_every_page_of_a_prefilled_store(tmp_path):
    prefill(tmp_path / "data", 500, days=1, accounts=2, pool=500)
    p = subprocess.run([sys.executable, "-m", "hlrsmpp.bench.console", "--data", str(tmp_path / "data"),
                        "--repeat", "2", "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout)
    pages = {(r["who"], r["page"]) for r in rows}
    for page in ("dashboard", "new request", "request results", "past requests", "past requests, 10 pages deep",
                 "past requests, all filters", "past requests, prefix no number has", "contacts", "account"):
        assert ("customer", page) in pages
    for page in ("accounts", "an account", "sessions", "test bench", "system"):
        assert ("operator", page) in pages
    assert all(r["status"] == 200 and r["median_ms"] > 0 and r["p95_ms"] >= r["median_ms"] for r in rows), rows


def test_the_console_bench_says_when_there_is_no_store(tmp_path):
    p = subprocess.run([sys.executable, "-m", "hlrsmpp.bench.console", "--data", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no store there" in p.stderr
