"""Auto-recharge: a package of `add` credit each time credit falls below `below`, at most
`max_per_month` a month, once per crossing across every process and restart, in the
ledger and notified. Real servers (threads and processes), real HTTP clients, real SQLite,
real redis-server, real SMTP server (aiosmtpd)."""
from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
import yaml

from conftest import ServerProcess, free_port
from http_client import basic
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from test_selfservice import ADMIN, TOKEN, Mailbox, _until, api, uk  # noqa: F401  (api: a fixture)

from hlrsmpp.accounts import Account

QUICK = {"retry_min": 0.2, "retry_max": 1.0}
#: No HLR-side failures (err 14 to 17 are refunded): every lookup costs its price.
CHARGED = {"mix": {"absent": 20, "ported": 10}}


@pytest.fixture(params=["sqlite", "redis"])
def store(request) -> dict:
    """The server's storage: the embedded SQLite store, or a real redis-server."""
    if request.param == "sqlite":
        return {}
    return {"storage": {"redis": {"url": request.getfixturevalue("redis_url")}}}


# ------------------------------------------------------------------ settings

@pytest.mark.parametrize("value, error", [
    ({"below": "-1", "add": "5", "max_per_month": 1}, "auto_recharge.below: must not be negative"),
    ({"below": "1", "add": "0", "max_per_month": 1}, "auto_recharge.add: must be more than 0"),
    ({"below": "1", "add": "5", "max_per_month": 0}, "auto_recharge.max_per_month: 0 out of range 1.."),
    ({"below": "1", "add": "5", "max_per_month": 1.5}, "auto_recharge.max_per_month: expected an integer"),
    ({"below": "1", "add": "5"}, "auto_recharge.max_per_month: required"),
    ({"below": "1", "add": "5", "max_per_month": 2, "every": 1}, "auto_recharge: unknown key(s) every"),
    ({"below": "0.0000001", "add": "5", "max_per_month": 2}, "auto_recharge.below: amount '0.0000001' has more"),
    ("yes", "auto_recharge: expected {below, add, max_per_month}"),
])
def test_auto_recharge_settings_are_checked(value, error):
    with pytest.raises(ValueError) as got:
        Account.from_config({"system_id": "acme", "password": "pw", "credit": "1", "auto_recharge": value})
    assert error in str(got.value)


def test_auto_recharge_needs_prepaid_credit():
    with pytest.raises(ValueError, match="auto_recharge needs prepaid credit"):
        Account.from_config({"system_id": "acme", "password": "pw",
                             "auto_recharge": {"below": "1", "add": "5", "max_per_month": 1}})
    acc = Account.from_config({"system_id": "acme", "password": "pw", "credit": "1",
                               "auto_recharge": {"below": "0", "add": 5, "max_per_month": 1}})
    assert acc.to_record()["auto_recharge"] == {"below": "0", "add": "5", "max_per_month": 1}


async def test_auto_recharge_through_the_admin_api(make_server, api):
    st = make_server([{"system_id": "acme", "password": "pw", "credit": "1"}], admin={"token": TOKEN})
    a = await api(st)
    setting = {"below": "0.5", "add": "10", "max_per_month": 3}
    status, body, _ = await a.call("PATCH", "/accounts/acme", ADMIN, json={"auto_recharge": setting})
    assert status == 200 and body["auto_recharge"] == setting, body
    status, body, _ = await a.call("PATCH", "/accounts/acme", ADMIN,
                                   json={"auto_recharge": dict(setting, add="-1")})
    assert status == 422 and "auto_recharge.add" in body["error"]["message"], body
    _, me, _ = await a.call("GET", "/me", basic("acme", "pw"))
    assert me["auto_recharge"] == dict(setting, month=me["auto_recharge"]["month"], this_month=0)
    status, body, _ = await a.call("PATCH", "/accounts/acme", ADMIN, json={"auto_recharge": None})
    assert status == 200 and "auto_recharge" not in body, body
    assert (await a.call("GET", "/me", basic("acme", "pw")))[1]["auto_recharge"] is None
    # On an account of unlimited credit it means nothing: refused.
    status, body, _ = await a.call("POST", "/accounts", ADMIN, json={
        "system_id": "free", "password": "pw", "auto_recharge": setting})
    assert status == 422 and "prepaid credit" in body["error"]["message"], body


# ------------------------------------------------------------------ one server

ACME = {"system_id": "acme", "password": "pw", "credit": "1", "price": "0.1",
        "auto_recharge": {"below": "0.75", "add": "0.02", "max_per_month": 2},
        "notify": {"email": ["ops@example.com"]}}


def _credit(st) -> Decimal:
    """The account's credit as the store holds it, every commit done."""
    st.persist()
    server = st.server
    if hasattr(server.store, "credit"):   # shared: the free packages and every lease
        return Decimal(server.store.credit("acme")["total"]) / 1_000_000
    return Decimal(server.book.get("acme").credit) / 1_000_000


def _recharges(st) -> list:
    return [e for e in st.server.store.ledger("acme") if e["kind"] == "auto_recharge"]


async def _lookups(a, n: int, start: int = 0) -> None:
    for i in range(n):   # one at a time: each charge is its own commit
        status, body, _ = await a.call("POST", "/lookups", basic("acme", "pw"), json={"number": uk(start + i)})
        assert status == 200, body


async def test_one_recharge_per_crossing_within_max_per_month(make_server, api, store):
    port = free_port()
    with Mailbox(port) as box:
        def start():
            return make_server([ACME], admin={"token": TOKEN}, notify=QUICK, hlr=CHARGED,
                               smtp={"host": "127.0.0.1", "port": port}, **store)
        st = start()
        a = await api(st)
        await _lookups(a, 2)                 # 1.0 -> 0.8: not below
        assert _recharges(st) == [] and _credit(st) == Decimal("0.8")
        await _lookups(a, 1, 2)              # 0.7: below 0.75, a crossing: +0.02
        assert _credit(st) == Decimal("0.72")
        assert [(e["amount"], e["note"]) for e in _recharges(st)] == [
            (20_000, f"credit below 0.75: 1 of 2 in {st.server.book.month(time.time())}")]
        await _until(lambda: len(box.messages) == 1)
        rcpt, msg = box.messages[0]
        assert rcpt == ["ops@example.com"] and "credit recharged by 0.02 (1 of 2 in" in msg["Subject"]
        # Falling further is the same crossing: nothing more.
        await _lookups(a, 3, 3)
        assert len(_recharges(st)) == 1 and _credit(st) == Decimal("0.42")
        # Nor does a restart make it a new one.
        st.stop()
        st = start()
        a = await api(st)
        await _lookups(a, 1, 6)
        assert len(_recharges(st)) == 1 and _credit(st) == Decimal("0.32")
        _, me, _ = await a.call("GET", "/me", basic("acme", "pw"))
        assert me["auto_recharge"]["this_month"] == 1 and me["auto_recharge"]["max_per_month"] == 2
        # A top-up lifts it back above: the next fall is a new crossing.
        assert (await a.call("POST", "/accounts/acme/top-up", ADMIN, json={"credit": "1"}))[0] == 200
        await _lookups(a, 5, 7)              # 1.32 -> 0.82
        assert len(_recharges(st)) == 1 and _credit(st) == Decimal("0.82")
        await _lookups(a, 1, 12)             # 0.72: below, +0.02
        assert len(_recharges(st)) == 2 and _credit(st) == Decimal("0.74")
        await _until(lambda: len(box.messages) == 2)
        # max_per_month (2) reached: a third crossing this month adds nothing.
        assert (await a.call("POST", "/accounts/acme/top-up", ADMIN, json={"credit": "1"}))[0] == 200
        await _lookups(a, 11, 13)            # 1.74 -> 0.64, across 0.75
        assert len(_recharges(st)) == 2 and _credit(st) == Decimal("0.64")
        _, me, _ = await a.call("GET", "/me", basic("acme", "pw"))
        assert me["auto_recharge"] == {"below": "0.75", "add": "0.02", "max_per_month": 2,
                                       "month": st.server.book.month(time.time()), "this_month": 2}
        _, listed, _ = await a.call("GET", "/me/notifications", basic("acme", "pw"))
        recharged = [n for n in listed["items"] if n["kind"] == "auto_recharge"]
        assert [n["data"]["count"] for n in recharged] == [2, 1]
        assert recharged[0]["data"] == {"amount": "0.02", "below": "0.75", "count": 2, "max_per_month": 2,
                                        "month": me["auto_recharge"]["month"]}
        await asyncio.sleep(0.5)
        assert len(box.messages) == 2
        # The ledger less the lookups' cost is the credit, to the micro-credit.
        _, ledger, _ = await a.call("GET", "/accounts/acme/ledger", ADMIN)
        added = sum(Decimal(e["amount"]) for e in ledger["entries"])
        spent = Decimal(st.server.store.totals()["acme"][1]) / 1_000_000
        assert added - spent == _credit(st) == Decimal("0.64")
        assert [e["kind"] for e in ledger["entries"]].count("auto_recharge") == 2


# ------------------------------------------------------------------ kill -9

def _config_file(tmp_path, accounts, storage: dict, smtp_port: int, name: str = "hlrsmpp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({
        "smpp": {"host": "127.0.0.1"}, "http": {"host": "127.0.0.1"}, "storage": storage,
        "log": {"format": "json", "level": "info"}, "admin": {"token": TOKEN}, "accounts": accounts,
        "hlr": dict(CHARGED, latency_ms=0), "notify": QUICK, "smtp": {"host": "127.0.0.1", "port": smtp_port}}))
    return path


def _call(port: int, method: str, path: str, body=None, who=("acme", "pw")):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", ADMIN["Authorization"] if who is None else basic(*who)["Authorization"])
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return got


@pytest.mark.slow
def test_a_recharge_survives_kill_9_once_with_its_notification_on_sqlite(tmp_path):
    port = free_port()
    acme = dict(ACME, auto_recharge={"below": "0.75", "add": "1", "max_per_month": 5})
    cfg = _config_file(tmp_path, [acme], {"path": str(tmp_path / "data")}, port)
    with Mailbox(port) as box:
        p = ServerProcess(cfg, free_port(), free_port()).start()
        try:
            for i in range(3):   # the third lookup crosses 0.75: its answer comes once it is durable
                assert _call(p.http_port, "POST", "/lookups", {"number": uk(i)})[0] == 200
        finally:
            p.kill()             # at once: perhaps before the notification reached the outbox
        p = ServerProcess(cfg, free_port(), free_port()).start()
        try:
            _, me = _call(p.http_port, "GET", "/me")
            assert me["credit"] == "1.7" and me["auto_recharge"]["this_month"] == 1
            _, ledger = _call(p.http_port, "GET", "/accounts/acme/ledger", who=None)
            assert [e["kind"] for e in ledger["entries"]] == ["top_up", "auto_recharge"]
            _wait(lambda: len(box.messages) == 1)
            _, listed = _call(p.http_port, "GET", "/me/notifications")
            assert [(n["kind"], n["sent"]) for n in listed["items"]] == [("auto_recharge", ["email"])]
            time.sleep(0.5)
            assert len(box.messages) == 1
        finally:
            p.terminate()
