"""``hlrsmpp bench`` against a real server: every lookup accounted for, no errors.

No timing assertions: the figures belong in BENCHMARKS.md, not in CI."""
from __future__ import annotations

import json
import os
import shutil
import time

import phonenumbers
import pytest

from hlrsmpp.bench import load as bench
from hlrsmpp.bench.load import BenchConfig, parse_numbers, run_load
from hlrsmpp.cli import build_parser

DEMOS = [{"system_id": "demo", "password": "demo"}, {"system_id": "demo2", "password": "demo"}]


def _complete(r: dict, n: int) -> None:
    assert r["errors"] == {}, r["errors"]
    assert r["problems"] == []
    assert r["submitted"] == n
    assert r["submit_ok"] == n
    assert r["receipts"] == n
    assert r["deliver_sm"] == n
    assert r["missing_receipts"] == 0 and r["unmatched_receipts"] == 0
    assert r["unanswered_submits"] == 0
    assert sum(r["receipt_states"].values()) == n
    assert r["latency_ms"]["p50"] is not None and r["latency_ms"]["p99.9"] >= r["latency_ms"]["p50"]
    assert r["lookups_per_s"] > 0


def test_trx_sessions_one_account_each(make_server):
    server = make_server(accounts=DEMOS)
    r = run_load(BenchConfig(port=server.smpp_port, sessions=2, window=32, count=2000))
    _complete(r, 2000)
    assert r["mode"] == "trx"


def test_tx_plus_rx(server):
    r = run_load(BenchConfig(port=server.smpp_port, mode="tx+rx", sessions=3, window=16, count=2000))
    _complete(r, 2000)


def test_open_loop_rate(server):
    r = run_load(BenchConfig(port=server.smpp_port, sessions=1, window=64, count=600, rate=3000))
    _complete(r, 600)
    assert r["rate_offered"] == 3000


def test_duration(server):
    r = run_load(BenchConfig(port=server.smpp_port, sessions=1, window=8, count=None, duration=0.3))
    assert r["errors"] == {} and r["problems"] == []
    assert r["submitted"] > 0 and r["receipts"] == r["submit_ok"] == r["submitted"]


def test_server_cpu_and_rss_of_a_pid(server):
    # The server fixture runs in this process: its pid stands in for a server's, so the
    # process's own CPU clock (every thread) brackets what the bench reads from /proc.
    before = time.process_time()
    r = run_load(BenchConfig(port=server.smpp_port, sessions=1, count=20000, server_pid=os.getpid()))
    spent = time.process_time() - before
    _complete(r, 20000)
    tick = 1 / os.sysconf("SC_CLK_TCK")
    # Within the bracket (give or take the clock ticks /proc counts in), and most of it:
    # the bench watches the load, only the connect and bind come before.
    assert 0.5 * spent - 2 * tick <= r["server"]["cpu_s"] <= spent + 2 * tick, (r["server"], spent)
    assert r["server"]["cpu_s"] > 0
    rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
    assert abs(r["server"]["rss_mib"] - rss) < 0.2 * rss, (r["server"], rss)


def test_the_generator_runs_on_the_cpus_asked_for(server):
    cpus = sorted(os.sched_getaffinity(0))
    args = build_parser().parse_args(["bench", "--port", str(server.smpp_port), "--cpus", str(cpus[-1])])
    assert args.cpus == str(cpus[-1])
    r = run_load(BenchConfig(port=server.smpp_port, sessions=1, count=300, cpus=args.cpus))
    _complete(r, 300)
    assert r["generator_cpus"] == [cpus[-1]]
    assert sorted(os.sched_getaffinity(0)) == cpus   # given back afterwards
    assert bench.parse_cpus(f"{cpus[0]}-{cpus[-1]}") == set(cpus)
    for bad in ("x", "", "1,,2", str(max(cpus) + 1)):
        with pytest.raises(ValueError, match="--cpus"):
            bench.parse_cpus(bad)


def test_idle_sessions(make_server):
    server = make_server(accounts=[{"system_id": "demo", "password": "demo", "max_tx": 100}])
    r = bench.bench(BenchConfig(port=server.smpp_port, idle_sessions=30, idle_settle=0.1,
                                server_pid=os.getpid()))
    assert r["bound"] == 30 and r["failed"] == 0
    assert r["rss_per_session_kib"] is not None


def test_refused_bind_is_reported(server):
    with pytest.raises(ConnectionError, match="RINVPASWD"):
        run_load(BenchConfig(port=server.smpp_port, sessions=1, password="wrong", count=10))


@pytest.mark.e2e
@pytest.mark.slow
def test_sms_text_messages_of_sms_accounts():
    """--sms: 1-part text messages from an SMS account, every receipt matched (the absent
    subscribers' messages expire within the run)."""
    r = bench.bench(BenchConfig(spawn=True, sessions=2, window=16, count=3000, sms=True))
    _complete(r, 3000)
    assert set(r["receipt_states"]) >= {"DELIVERED", "UNDELIVERABLE"}


def test_spawn_measures_the_server_process():
    # Enough lookups for the server's CPU to span clock ticks (/proc counts in 10 ms).
    r = bench.bench(BenchConfig(spawn=True, sessions=2, window=16, count=20000))
    _complete(r, 20000)
    assert r["spawned"] and r["server"]["cpu_s"] > 0 and r["server"]["rss_mib"] > 0


@pytest.mark.e2e
@pytest.mark.slow
def test_a_spawned_server_keeps_the_default_receipt_window():
    """tx+rx measures one receiver as users get it: the bench does not widen its window."""
    for mode in ("tx+rx", "trx"):
        spawned = bench.SpawnedServer(BenchConfig(spawn=True, mode=mode, sessions=3, window=40))
        conf = json.loads(spawned.write_config().read_text())
        shutil.rmtree(spawned.dir)
        assert "window" not in conf["smpp"]
    r = bench.bench(BenchConfig(spawn=True, mode="tx+rx", sessions=3, window=40, count=600))
    _complete(r, 600)


def test_default_numbers_are_valid_mobiles():
    pool = parse_numbers(None, 2000, seed=7)
    assert len(set(pool)) > 1900
    ccs = set()
    for n in pool:
        num = phonenumbers.parse("+" + n)
        assert phonenumbers.is_valid_number(num), n
        assert phonenumbers.number_type(num) in (phonenumbers.PhoneNumberType.MOBILE,
                                                 phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE), n
        ccs.add(num.country_code)
    assert len(ccs) >= 15


def test_number_specs(tmp_path):
    assert set(parse_numbers("447400000000-447400000009", 100, 1)) <= {f"44740000000{i}" for i in range(10)}
    assert all(n.startswith("9198") and len(n) == 12 for n in parse_numbers("+9198xxxxxxxx", 50, 1))
    f = tmp_path / "nums.txt"
    f.write_text("447400123456\n9198123456xx\n")
    pool = parse_numbers(f"@{f}", 10, 1)
    assert pool[0] == "447400123456" and pool[1].startswith("9198123456")
    with pytest.raises(ValueError):
        parse_numbers("44abc", 1, 1)


def test_cli_accepts_the_make_bench_flags(capsys, server):
    args = build_parser().parse_args(["bench", "--spawn", "--sessions", "4", "--window", "64",
                                      "--count", "200000"])
    assert (args.spawn, args.sessions, args.window, args.count, args.mode) == (True, 4, 64, 200000, "trx")
    args = build_parser().parse_args(["bench", "--port", str(server.smpp_port), "--sessions", "1",
                                      "--count", "200", "--json"])
    assert args.func(args) == 0
    text = capsys.readouterr().out  # the in-process server logs to stdout too
    out = json.loads(text[text.index("{\n"):])
    assert out["receipts"] == 200


def test_workers_bench_two_processes(make_server):
    server = make_server(accounts=DEMOS)
    r = run_load(BenchConfig(port=server.smpp_port, sessions=2, window=16, count=1001, workers=2))
    _complete(r, 1001)
    assert r["workers"] == 2
