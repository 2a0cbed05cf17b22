"""Several real ``hlrsmpp serve`` processes sharing one real redis-server:
the session rule across processes, receipts that follow the receiver, kill -9 of the
receiver's process, credit that is never overdrawn, 100,000 lookups over two processes
with exact credit and history, accounts and history seen from every process.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import redis
import smpplib.exceptions
import smpplib.smpp
import yaml

from conftest import ServerProcess, eventually, free_port
from http_client import http_request
from esme import RECEIPT_RE, SmpplibEsme
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # several server processes on one redis-server

P = "hlrsmpp:"
M = 1_000_000
ADMIN = "s3cr3t-admin"
LEASE = 2.0


def _config(tmp_path, url, accounts, name="hlrsmpp.yaml", **redis_opts):
    cfg = {
        "smpp": {"host": "127.0.0.1", "max_connections_per_ip": 10000},
        "http": {"host": "127.0.0.1"},
        "storage": {"redis": {"url": url, "lease": LEASE, **redis_opts}},
        "log": {"format": "json", "level": "info"},
        "admin": {"token": ADMIN},
        "accounts": accounts,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def procs():
    started: list[ServerProcess] = []

    def start(cfg_path) -> ServerProcess:
        p = ServerProcess(cfg_path, free_port(), free_port()).start()
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.terminate()


def _bind(port, mode, sid="acme", pw="pw") -> tuple[int, SmpplibEsme | None]:
    esme = SmpplibEsme(port, timeout=2)
    try:
        esme.bind(mode, system_id=sid, password=pw)
        return 0, esme
    except smpplib.exceptions.PDUError as err:
        esme.client.disconnect()
        return err.args[1], None


def _submit(esme, numbers) -> dict[str, int]:
    """message_id -> status for every number (ids of refused ones are their index)."""
    seqs = [esme.submit(n) for n in numbers]
    esme.pump(lambda: all(s in esme.resps for s in seqs), timeout=30)
    return {(esme.resps[s].message_id.decode() if esme.resps[s].status == 0 else f"#{k}"): esme.resps[s].status
            for k, s in enumerate(seqs)}


def _receipt_ids(esme) -> set[str]:
    out = set()
    for pdu in esme.receipts:
        text = pdu.short_message.decode("ascii")
        m = RECEIPT_RE.match(text)
        assert m is not None, text
        assert m["id"] == pdu.receipted_message_id.decode()
        out.add(m["id"])
    return out


def _audit(r, sid: str, initial: int) -> dict:
    n, cost = (int(x or 0) for x in r.hmget(f"{P}tot:{sid}", "n", "c"))
    free = sum(int(p["c"]) for p in json.loads(r.hget(f"{P}acct:{sid}", "pk")))
    return {"lookups": n, "history": r.zcard(f"{P}hist:{sid}"), "cost": cost, "free": free,
            "exact": free + cost == initial, "leases": r.hgetall(f"{P}lease:{sid}"),
            "queued": int(r.get(f"{P}q:{sid}") or 0), "stream": r.xlen(f"{P}rcpt:{sid}")}


def _http(port, path, method="GET", body=None, token=ADMIN):
    return http_request(f"http://127.0.0.1:{port}{path}", method, body, token)


# -------------------------------------------------------------------- must-shows

def test_one_receiver_across_processes_and_receipts_reach_it(tmp_path, redis_url, procs):
    cfg = _config(tmp_path, redis_url, [{"system_id": "acme", "password": "pw", "credit": "1000", "max_tx": 2}])
    a, b = procs(cfg), procs(cfg)
    status, rx = _bind(a.smpp_port, "transceiver")
    assert status == 0
    # The session rule holds across processes: a second receiving session on B is refused.
    assert _bind(b.smpp_port, "receiver")[0] == 0x0D
    assert _bind(b.smpp_port, "transceiver")[0] == 0x0D
    # max_tx counts the transmitters of every process.
    s1, tx = _bind(b.smpp_port, "transmitter")
    s2, tx_a = _bind(a.smpp_port, "transmitter")
    assert (s1, s2) == (0, 0)
    assert _bind(b.smpp_port, "transmitter")[0] == 0x0D
    tx_a.close()
    # Lookups submitted on B arrive as receipts on A's transceiver.
    sent = _submit(tx, [f"4479{k:08d}" for k in range(300)])
    assert set(sent.values()) == {0} and len(sent) == 300
    rx.pump(lambda: set(sent) <= _receipt_ids(rx), timeout=20)
    assert _receipt_ids(rx) == set(sent)
    # And the other way round: A's own lookups too.
    own = _submit(rx, [f"4478{k:08d}" for k in range(50)])
    rx.pump(lambda: set(own) <= _receipt_ids(rx), timeout=20)
    rx.pump(lambda: int(redis.Redis.from_url(redis_url).get(f"{P}q:acme") or 0) == 0, timeout=10)
    ids = {int(i) for i in list(sent) + list(own)}
    assert {(i >> 12) & 1023 for i in ids} == {int(x) for x in redis.Redis.from_url(redis_url).smembers(f"{P}nodes")}
    tx.close()
    rx.close()


def test_kill_9_of_the_receivers_process_moves_the_receiver_and_its_receipts(tmp_path, redis_url, procs):
    cfg = _config(tmp_path, redis_url, [{"system_id": "acme", "password": "pw", "credit": "1000"}])
    a, b = procs(cfg), procs(cfg)
    status, stuck = _bind(a.smpp_port, "transceiver")
    assert status == 0  # ... and never reads: A's deliver_sm stay unanswered
    _, tx = _bind(b.smpp_port, "transmitter")
    sent = _submit(tx, [f"4479{k:08d}" for k in range(400)])
    assert set(sent.values()) == {0}
    r = redis.Redis.from_url(redis_url)
    # A has taken receipts for delivery (they are pending under its consumer) ...
    assert eventually(lambda: any(g["pending"] for g in r.xinfo_groups(f"{P}rcpt:acme")), 5)
    # ... and is busy charging lookups of its own transmitter when it is killed.
    a_acked: set[str] = set()
    stop = threading.Event()

    def load_on_a():
        esme = None
        try:
            _, esme = _bind(a.smpp_port, "transmitter")
            k = 0
            while not stop.is_set():
                _submit(esme, [f"4478{k + j:08d}" for j in range(50)])
                k += 50
        except Exception:
            pass  # A died under it
        finally:
            if esme is not None:  # every submit_sm_resp ESME_ROK that did arrive
                a_acked.update(p.message_id.decode() for p in list(esme.resps.values()) if p.status == 0)
    loader = threading.Thread(target=load_on_a, daemon=True)
    loader.start()
    assert eventually(lambda: r.zcard(f"{P}hist:acme") >= 900, 20)
    a.kill()
    killed = time.monotonic()
    stop.set()
    loader.join(10)
    sent = dict(sent, **{i: 0 for i in a_acked})
    # ... within the lease time a receiver binds on B,
    while True:
        status, rx = _bind(b.smpp_port, "receiver")
        if status == 0:
            break
        assert status == 0x0D
        assert time.monotonic() - killed < LEASE + 1.0, "the dead process's receiver lease outlived its lease"
        time.sleep(0.1)
    assert time.monotonic() - killed <= LEASE + 1.0
    # ... and receives every pending receipt: of each lookup acknowledged on B or on A (a
    # lookup A committed but could not answer before dying is recorded too, and charged).
    rx.pump(lambda: set(sent) <= _receipt_ids(rx), timeout=20)
    recorded = {m.decode().lstrip("0") for m in r.zrange(f"{P}hist:acme", 0, -1)}
    assert set(sent) <= _receipt_ids(rx) <= recorded
    # The dead process's unspent credit comes back (reaped by B), and nothing is lost.
    dead = (int(next(iter(a_acked))) >> 12) & 1023
    assert eventually(lambda: str(dead).encode() not in r.smembers(f"{P}nodes") and not any(
        k.startswith(f"{dead}:".encode()) for k in r.hgetall(f"{P}lease:acme")), LEASE * 3)
    rx.pump(lambda: int(r.get(f"{P}q:acme") or 0) == 0, timeout=10)
    tx.close()
    rx.close()
    stuck.client.disconnect()
    assert b.terminate() == 0
    audit = _audit(r, "acme", 1000 * M)
    # Every recorded lookup is charged once (exact credit); lookups A had not committed are not.
    assert audit["exact"] and audit["lookups"] == audit["history"] == len(recorded) >= len(sent)
    assert audit["leases"] == {} and audit["queued"] == 0 and audit["stream"] == 0


def test_credit_is_never_overdrawn_across_processes(tmp_path, redis_url, procs):
    # 60 lookups of credit at 1.0 each; two processes try 100 each at once.
    cfg = _config(tmp_path, redis_url, [{"system_id": "acme", "password": "pw", "credit": "60", "price": 1}],
                  lease_idle=1.0)
    a, b = procs(cfg), procs(cfg)
    txs = [_bind(p.smpp_port, "transmitter")[1] for p in (a, b)]
    results: list[dict] = [{}, {}]

    def run(i):
        results[i] = _submit(txs[i], [f"44{7 + i}9{k:08d}" for k in range(100)])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = [sum(1 for s in res.values() if s == 0) for res in results]
    assert sum(ok) <= 60
    assert all(s in (0, 0x10) for res in results for s in res.values())
    # What one process holds and does not use goes back when another asks: in the end
    # every credit is spent, whichever process the lookups came through.
    deadline = time.monotonic() + 20
    total = sum(ok)
    while total < 60 and time.monotonic() < deadline:
        for tx in txs:
            got = _submit(tx, ["447912345678"])
            total += sum(1 for s in got.values() if s == 0)
        time.sleep(0.2)
    assert total == 60
    assert all(set(_submit(tx, ["447912345678"]).values()) == {0x10} for tx in txs)
    for tx in txs:
        tx.close()
    assert a.terminate() == 0 and b.terminate() == 0
    audit = _audit(redis.Redis.from_url(redis_url), "acme", 60 * M)
    assert audit["exact"] and audit["cost"] == 60 * M and audit["free"] == 0 and audit["lookups"] == 60


COUNT = int(os.environ.get("HLRSMPP_REDIS_TEST_COUNT", "100000"))


@pytest.mark.timeout(240)
def test_lookups_spread_over_two_worker_processes_leave_credit_and_history_exact(tmp_path, redis_url):
    from hlrsmpp.bench.load import BenchConfig, bench
    sessions = 16  # the kernel hashes connections over the two listeners: all on one 2 in 65,536 times
    accounts = [{"system_id": "load" if i == 0 else f"load{i + 1}", "password": "load",
                 "credit": "100000", "price": 0.1} for i in range(sessions)]
    # Info logs: each worker's server_started says it listens (a worker joins the cluster
    # well before it listens; sessions that connect before the second listens all go to
    # the first). There is no per-PDU log at info.
    cfg = _config(tmp_path, redis_url, accounts)
    smpp, http = free_port(), free_port()
    log = open(tmp_path / "workers.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "hlrsmpp", "serve", "--workers", "2", "--config", str(cfg),
                             "--smpp-port", str(smpp), "--http-port", str(http)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    r = redis.Redis.from_url(redis_url)
    try:
        assert eventually(lambda: (tmp_path / "workers.log").read_text().count('"server_started"') == 2
                           and r.scard(f"{P}nodes") == 2, 60, 0.2), (tmp_path / "workers.log").read_text()[-2000:]
        result = bench(BenchConfig(port=smpp, sessions=sessions, window=64, count=COUNT,
                                   system_id="load", password="load", drain_timeout=120))
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        log.close()
    assert rc == 0, (tmp_path / "workers.log").read_text()[-3000:]
    assert result["submit_ok"] == result["receipts"] == COUNT, result
    assert not result["errors"] and not result["missing_receipts"] and not result["problems"]
    nodes: set[int] = set()
    total = 0
    for acc in accounts:
        sid = acc["system_id"]
        audit = _audit(r, sid, 100000 * M)
        assert audit["exact"], (sid, audit)
        assert audit["lookups"] == audit["history"]
        assert audit["cost"] == audit["lookups"] * 100_000 - _refunded(r, sid)
        assert audit["leases"] == {} and audit["queued"] == 0 and audit["stream"] == 0, audit
        total += audit["lookups"]
        nodes |= {(int(i) >> 12) & 1023 for i in r.zrange(f"{P}hist:{sid}", 0, -1)}
    assert total == COUNT
    assert len(nodes) == 2, "the kernel should spread 16 sessions over both workers"
    print(f"\n{COUNT} lookups over 2 worker processes: {result['lookups_per_s']:,.0f} lookups/s")


def _refunded(r, sid) -> int:
    """Lookups our side failed (HLR timeout and such) are refunded: cost 0 in the history."""
    n = 0
    ids = [int(i) for i in r.zrange(f"{P}hist:{sid}", 0, -1)]
    by_second: dict[int, list[int]] = {}
    for i in ids:
        by_second.setdefault((i >> 22) // 1000, []).append(i)
    for sec, lids in by_second.items():
        for rec in r.hmget(f"{P}lk:{sec}", lids):
            if rec.split(b"\x1f")[8] == b"0":
                n += 100_000
    return n


def test_workers_need_redis(tmp_path):
    cfg = tmp_path / "sqlite.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path / "data")},
                                   "accounts": [{"system_id": "a", "password": "b"}]}))
    out = subprocess.run([sys.executable, "-m", "hlrsmpp", "serve", "--workers", "2", "--config", str(cfg),
                          "--smpp-port", str(free_port()), "--http-port", str(free_port())],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--workers needs storage.redis" in out.stderr


def test_accounts_credit_and_history_are_the_same_from_every_process(tmp_path, redis_url, procs):
    cfg = _config(tmp_path, redis_url, [{"system_id": "acme", "password": "pw", "credit": "10"}])
    a, b = procs(cfg), procs(cfg)
    # An account created on A can bind on B; credit topped up on B is spendable on A.
    status, body = _http(a.http_port, "/api/v1/accounts", "POST",
                         {"system_id": "newco", "password": "npw", "credit": "1"})
    assert status in (200, 201), body
    def binds_on_b() -> bool:
        status, esme = _bind(b.smpp_port, "transmitter", "newco", "npw")
        if esme is not None:
            esme.close()
        return status == 0
    assert eventually(binds_on_b, 5)
    status, body = _http(b.http_port, "/api/v1/accounts/newco/top-up", "POST", {"credit": "2"})
    assert status in (200, 201), body
    assert eventually(lambda: json.loads(_http(a.http_port, "/api/v1/accounts/newco")[1])["credit"] == "3", 5)
    _, tx = _bind(a.smpp_port, "transmitter", "newco", "npw")
    # 0.1 each: 30 fit in 3.0. B holds the 2.0 it was topped up with until A asks for it
    # (the lease tolerance, docs/scaling.md): A's burst may be refused in part, then within
    # about a second the credit moves to A and exactly 30 are accepted.
    sent = _submit(tx, [f"4479{k:08d}" for k in range(40)])
    assert set(sent.values()) <= {0, 0x10}
    deadline = time.monotonic() + 10
    k = 0
    while sum(1 for s in sent.values() if s == 0) < 30 and time.monotonic() < deadline:
        sent.update(_submit(tx, [f"4478{k:08d}"]))
        k += 1
        time.sleep(0.05)
    assert sum(1 for s in sent.values() if s == 0) == 30
    assert set(_submit(tx, ["447912345678"]).values()) == {0x10}
    sent = {i: s for i, s in sent.items() if s == 0}
    # The history made on A is exported from B, as with SQLite.
    status, csv_text = _http(b.http_port, "/api/v1/history?account=newco&format=csv")
    assert status == 200
    exported = {line.split(",")[0] for line in csv_text.strip().splitlines()[1:]}
    assert exported == {i for i, s in sent.items() if s == 0}
    status, body = _http(b.http_port, f"/api/v1/lookups/{next(i for i, s in sent.items() if s == 0)}")
    assert status == 200 and json.loads(body)["number"].startswith("447")
    # Disabling on B unbinds the account's sessions on A.
    status, body = _http(b.http_port, "/api/v1/accounts/newco/disable", "POST", {})
    assert status == 200, body

    def unbind_received() -> bool:
        try:
            return tx.client.read_pdu().command == "unbind"
        except (socket.timeout, OSError):
            return False
    assert eventually(unbind_received, 5)
    tx.client.disconnect()


def test_clean_stop_and_restart_redeliver_exactly_the_unacknowledged_receipts(tmp_path, redis_url, procs):
    cfg = _config(tmp_path, redis_url, [{"system_id": "acme", "password": "pw"}])
    a = procs(cfg)
    _, tx = _bind(a.smpp_port, "transmitter")
    sent = _submit(tx, [f"4479{k:08d}" for k in range(300)])
    _, rx = _bind(a.smpp_port, "receiver")
    rx.pump(lambda: len(rx.receipts) >= 100, timeout=10)  # acknowledges what it reads
    first = _receipt_ids(rx)
    # A clean unbind: what arrives after it is neither acknowledged nor counted (closing
    # with unread data would reset the connection and lose acknowledgements in flight).
    rx.client.send_pdu(smpplib.smpp.make_pdu("unbind", client=rx.client))
    while rx.client.read_pdu().command != "unbind_resp":
        pass
    rx.client.disconnect()
    tx.close()
    assert a.terminate() == 0  # SIGTERM: the acknowledgements are committed
    b = procs(cfg)
    _, rx = _bind(b.smpp_port, "receiver")
    rx.pump(lambda: first | _receipt_ids(rx) >= set(sent), timeout=20)
    time.sleep(0.3)
    rx.pump(lambda: True)
    again = [pdu.receipted_message_id.decode() for pdu in rx.receipts]
    assert len(again) == len(set(again)) and not set(again) & first  # nothing twice
    assert first | set(again) == set(sent)
    rx.close()


def test_a_process_that_lost_its_receiver_lease_unbinds_the_receiver(tmp_path, redis_url, procs):
    cfg = _config(tmp_path, redis_url, [{"system_id": "acme", "password": "pw"}])
    a = procs(cfg)
    _, rx = _bind(a.smpp_port, "transceiver")
    r = redis.Redis.from_url(redis_url)
    r.set(f"{P}rx:acme", "999:1", px=int(LEASE * 1000))  # as if another process held it now

    def unbind_received() -> bool:
        try:
            return rx.client.read_pdu().command == "unbind"
        except (socket.timeout, OSError):
            return False
    assert eventually(unbind_received, LEASE)
    rx.client.disconnect()
