"""When the store cannot commit (a full disk, a Redis out of memory), nothing is applied
that was answered as refused: operator writes (credit, settings, accounts), lookups; a
top-up retried with its Idempotency-Key is credited once; credit always equals the
ledger less the lookups; /healthz says the store is down. A real full filesystem (a small
tmpfs filled to the last byte), a real redis-server with maxmemory reached."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import yaml

from conftest import ServerProcess, free_port
from esme import SmpplibEsme
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)

TOKEN = "t0ken"
M = 1_000_000
ACME = {"system_id": "acme", "password": "pw", "credit": "10"}


def call(port: int, method: str, path: str, body=None, headers=None, token: str | None = TOKEN):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


def credit(port: int, sid: str = "acme") -> str:
    status, body, _ = call(port, "GET", f"/api/v1/accounts/{sid}")
    assert status == 200, body
    return body["credit"]


def audit(store, book=None) -> dict[str, tuple[int, int]]:
    """Per credit-limited account: (ledger less the cost of its lookups, credit as stored
    [and as held in memory]); the two must be equal."""
    ledger = store.ledger_totals()
    costs = store.totals()
    stored = {sid: rec for sid, rec in store.account_records().items()}
    out = {}
    for sid, total in ledger.items():
        rec = stored[sid]
        held = sum(int(round(float(p["credit"]) * M)) for p in rec.get("packages") or [])
        out[sid] = (total - costs.get(sid, (0, 0))[1], held) + (
            (book.get(sid).credit,) if book is not None else ())
    return out


def assert_exact(store, book=None) -> None:
    for sid, values in audit(store, book).items():
        assert len(set(values)) == 1, (sid, values)


def test_refused_admin_writes_change_nothing(small_disk, make_server):
    st = make_server([ACME], admin={"token": TOKEN})
    port = st.http_port
    assert call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "1"})[0] == 200
    small_disk.fill()
    for _ in range(3):
        status, body, _ = call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "5"})
        assert status == 503 and body["error"]["code"] == "system_error", body
    assert credit(port) == "11"
    assert st.server.book.get("acme").credit == 11 * M
    # Settings, an account's state, a new account: refused, not applied.
    assert call(port, "PATCH", "/api/v1/accounts/acme", {"price": "0.5"})[0] == 503
    assert call(port, "POST", "/api/v1/accounts/acme/disable")[0] == 503
    assert call(port, "POST", "/api/v1/accounts", {"system_id": "new", "password": "pw", "credit": 3})[0] == 503
    status, acc, _ = call(port, "GET", "/api/v1/accounts/acme")
    assert acc["price"] == "0.1" and acc["enabled"] is True
    assert call(port, "GET", "/api/v1/accounts/new")[0] == 404
    # A lookup meanwhile is refused too and costs nothing.
    esme = SmpplibEsme(st.smpp_port)
    esme.bind("transceiver", system_id="acme", password="pw")
    seq = esme.submit("447400123456")
    esme.pump(lambda: seq in esme.resps)
    assert esme.resps[seq].status == 0x08
    esme.close()
    assert st.server.book.get("acme").credit == 11 * M
    # Space again: the next commits carry nothing of what was refused.
    small_disk.free()
    assert call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "2"})[0] == 200
    st.persist()
    assert credit(port) == "13"
    assert_exact(st.server.store, st.server.book)
    entries = call(port, "GET", "/api/v1/accounts/acme/ledger")[1]["entries"]
    assert [(e["kind"], e["amount"]) for e in entries] == [("top_up", "10"), ("top_up", "1"), ("top_up", "2")]
    st.stop()
    again = make_server([ACME], admin={"token": TOKEN})
    assert credit(again.http_port) == "13"
    assert_exact(again.server.store, again.server.book)


def test_a_top_up_retried_with_its_idempotency_key_credits_once(small_disk, make_server):
    st = make_server([ACME], admin={"token": TOKEN})
    port = st.http_port
    key = {"Idempotency-Key": "invoice-2026-0042"}
    small_disk.fill()
    status, _, _ = call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "5", "note": "inv 42"}, key)
    assert status == 503
    small_disk.free()
    status, first, headers = call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "5", "note": "inv 42"}, key)
    assert status == 200 and first["account"]["credit"] == "15" and "Idempotent-Replayed" not in headers
    for body in ({"credit": "5", "note": "inv 42"}, {"credit": 5.0, "note": "inv 42"}):
        status, again, headers = call(port, "POST", "/api/v1/accounts/acme/top-up", body, key)
        assert status == 200 and headers.get("Idempotent-Replayed") == "true"
        assert again["package"] == first["package"] and again["account"]["credit"] == "15"
    status, body, _ = call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "6", "note": "inv 42"}, key)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    assert call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "5"}, {"Idempotency-Key": ""})[0] == 400
    assert credit(port) == "15"
    st.stop()
    again = make_server([ACME], admin={"token": TOKEN})  # the key is durable, with the ledger entry
    status, body, headers = call(again.http_port, "POST", "/api/v1/accounts/acme/top-up",
                                 {"credit": "5", "note": "inv 42"}, key)
    assert status == 200 and headers.get("Idempotent-Replayed") == "true"
    assert credit(again.http_port) == "15"
    assert_exact(again.server.store, again.server.book)


def test_credit_equals_the_ledger_after_failures_under_load(small_disk, make_server):
    st = make_server([ACME], admin={"token": TOKEN})
    port = st.http_port
    esme = SmpplibEsme(st.smpp_port)
    esme.bind("transceiver", system_id="acme", password="pw")
    statuses = []
    for i, phase in enumerate(("before", "full", "after")):
        if phase == "full":
            small_disk.fill()
        seqs = [esme.submit(f"4474{i}{k:07d}") for k in range(20)]
        status, _, _ = call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "1"})
        esme.pump(lambda: all(s in esme.resps for s in seqs), timeout=20)
        statuses.append((phase, status, {esme.resps[s].status for s in seqs}))
        if phase == "full":
            small_disk.free()
    assert statuses[1][1] == 503 and statuses[1][2] == {0x08}, statuses
    assert statuses[0][1] == statuses[2][1] == 200
    esme.close()
    st.persist()
    assert_exact(st.server.store, st.server.book)


def test_healthz_says_the_store_is_down_while_it_cannot_commit(small_disk, make_server):
    st = make_server([ACME])
    status, body, _ = call(st.http_port, "GET", "/healthz", token=None)
    assert status == 200 and body["checks"]["storage"] is True
    small_disk.fill()
    status, body, _ = call(st.http_port, "GET", "/healthz", token=None)
    assert status == 503 and body["status"] == "unavailable" and body["checks"]["storage"] is False, body
    small_disk.free()
    status, body, _ = call(st.http_port, "GET", "/healthz", token=None)
    assert status == 200 and body["checks"]["storage"] is True, body


# ------------------------------------------------------------------ Redis

def _redis_config(tmp_path, url):
    path = tmp_path / "hlrsmpp.yaml"
    path.write_text(yaml.safe_dump({
        "smpp": {"host": "127.0.0.1"}, "http": {"host": "127.0.0.1"},
        "storage": {"redis": {"url": url}}, "log": {"format": "json", "level": "info"},
        "admin": {"token": TOKEN}, "accounts": [ACME]}))
    return path


def test_redis_out_of_memory_refuses_admin_writes_and_turns_healthz_red(tmp_path, redis_url, redis_server):
    proc = ServerProcess(_redis_config(tmp_path, redis_url), free_port(), free_port()).start()
    r = redis_server.client()
    try:
        port = proc.http_port
        deadline = time.monotonic() + 20
        while True:  # the HTTP listener opens after the SMPP one
            try:
                call(port, "GET", "/healthz", token=None)
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, proc.output()[-2000:]
                time.sleep(0.05)
        assert call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "1"},
                    {"Idempotency-Key": "k1"})[0] == 200
        assert call(port, "GET", "/healthz", token=None)[0] == 200
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", 1)
        try:
            for _ in range(3):
                assert call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "5"})[0] == 503
            assert call(port, "PATCH", "/api/v1/accounts/acme", {"price": "0.5"})[0] == 503
            status, body, _ = call(port, "GET", "/healthz", token=None)
            assert status == 503 and body["checks"]["storage"] is False
        finally:
            r.config_set("maxmemory", 0)
        status, acc, _ = call(port, "GET", "/api/v1/accounts/acme")
        assert acc["credit"] == "11" and acc["price"] == "0.1", acc
        status, _, headers = call(port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "1"},
                                  {"Idempotency-Key": "k1"})
        assert status == 200 and headers.get("Idempotent-Replayed") == "true"
        assert credit(port) == "11"
        ledger = [json.loads(e) for e in r.lrange("hlrsmpp:ledger:acme", 0, -1)]
        assert sum(e[2] for e in ledger) == 11 * M
    finally:
        proc.terminate()
