"""Auto-recharge: a package of `add` credit each time credit falls below `below`, at most
`max_per_month` a month, once per crossing across every process and restart, in the
ledger and notified. Real servers (threads and processes), real HTTP clients, real SQLite,
real redis-server, real SMTP server (aiosmtpd)."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from decimal import Decimal

import pytest
import redis
import yaml

from conftest import ServerProcess, free_port
from console_client import Console, console_session
from http_client import basic
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from test_selfservice import ADMIN, TOKEN, Mailbox, _until, api, uk  # noqa: F401  (api: a fixture)

from hlrsmpp.accounts import Account, AccountBook
from hlrsmpp.redis.outbox import LEASE

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


def _book(**recharge):
    made: list = []
    book = AccountBook(on_auto_recharge=lambda acc, package, at: made.append(package.credit))
    acc = book.add(Account.from_config({"system_id": "acme", "password": "pw", "credit": "1", "price": "0.1",
                                        "auto_recharge": dict({"below": "0.75", "add": "0.02",
                                                               "max_per_month": 5}, **recharge)}))
    return book, acc, made


def test_a_crossing_is_a_charge_from_below_or_more_to_less():
    book, acc, made = _book()
    now = time.time()
    for k in range(3):
        assert book.admit(acc, "44", now + k) is None
    assert made == [20_000] and acc.credit == 720_000      # 0.8 -> 0.7: +0.02, still below
    assert [p.label for p in acc.packages] == ["", "auto_recharge"]
    for k in range(3):                                      # further down: the same crossing
        assert book.admit(acc, "44", now + 10 + k) is None
    assert made == [20_000] and acc.credit == 420_000
    book.top_up(acc, 400_000)                               # 0.82: back above
    assert book.admit(acc, "44", now + 20) is None          # 0.72: a new crossing
    assert made == [20_000, 20_000] and book.recharges(acc, now)[1] == 2


def test_a_batch_crossing_and_max_per_month():
    book, acc, made = _book(add="1", max_per_month=1)
    assert book.admit_many(acc, ["44"] * 5, time.time()) == [None] * 5   # 1.0 -> 0.5 in one charge
    assert made == [1_000_000] and acc.credit == 1_500_000
    assert book.admit_many(acc, ["44"] * 8, time.time() + 1) == [None] * 8   # 0.7: max reached
    assert made == [1_000_000] and acc.credit == 700_000


def test_no_book_hook_no_recharge():
    # A shared store decides auto-recharge in its commit: the book adds nothing.
    book, acc, made = _book()
    book.set_auto_recharge(None)
    now = time.time()
    for k in range(5):
        assert book.admit(acc, "44", now + k) is None
    assert made == [] and acc.credit == 500_000


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
        # The console's dashboard says so too.
        async with console_session() as session:
            console = Console(st, session)
            await console.login("acme", "pw")
            status, page, _ = await console.get("/console/")
        assert status == 200 and "adds 0.02 below 0.75 · 2 of 2 this month" in page


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
            # One notification (its mail is sent at least once: a kill -9 after sending and
            # before marking it sent sends it again, as the outbox does for every kind).
            _wait(lambda: [(n["kind"], n["sent"]) for n in _call(p.http_port, "GET", "/me/notifications")[1]["items"]]
                  == [("auto_recharge", ["email"])])
            assert len({m["Message-ID"] for _, m in box.messages}) == 1
        finally:
            p.terminate()


class Spenders:
    """Threads that look up one number at a time through a server process until stopped
    (or the process is gone): concurrent charges of one account."""

    def __init__(self, port: int, threads: int = 4):
        self.stop = threading.Event()
        self.ok = 0
        self.threads = [threading.Thread(target=self._run, args=(port, k), daemon=True) for k in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, port: int, k: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                status, _ = _call(port, "POST", "/lookups", {"number": uk(k * 100_000 + i)})
            except OSError:
                return   # the process was killed
            self.ok += status == 200

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_two_processes_on_redis_recharge_once_per_crossing_across_a_kill_9(tmp_path, redis_url):
    M = 1_000_000
    port = free_port()
    acme = dict(ACME, credit="5", auto_recharge={"below": "2", "add": "3", "max_per_month": 100})
    # Small leases of credit (5 lookups' worth): both processes charge it at every crossing.
    cfg = _config_file(tmp_path, [acme], {"redis": {"url": redis_url, "lease": 2.0, "lease_lookups": 5,
                                                    "lease_seconds": 0.1}}, port)
    r = redis.Redis.from_url(redis_url)

    def recharges() -> int:
        return sum(1 for e in r.lrange("hlrsmpp:ledger:acme", 0, -1) if json.loads(e)[1] == "auto_recharge")

    with Mailbox(port) as box:
        a = ServerProcess(cfg, free_port(), free_port()).start()
        b = ServerProcess(cfg, free_port(), free_port()).start()
        try:
            first_a, first_b = Spenders(a.http_port), Spenders(b.http_port)
            _wait(lambda: recharges() >= 1, 60)
            first_a.join()
            first_b.join()
            # Once its mail went (else it waits out the claim of the process killed sending
            # it, below), the kill -9 between crossings, lookups in flight on both.
            _wait(lambda: not r.zcard("hlrsmpp:notifq"), 30)
            spend_a, spend_b = Spenders(a.http_port), Spenders(b.http_port)
            _wait(lambda: spend_a.ok + spend_b.ok >= 5, 30)
            a.kill()
            spend_a.join()
            _wait(lambda: recharges() >= 2, 60)
            spend_b.join()
            a = ServerProcess(cfg, free_port(), free_port()).start()   # back, on the same store
            before = recharges()
            again, spend_b = Spenders(a.http_port), Spenders(b.http_port)
            _wait(lambda: recharges() >= before + 2, 60)
            again.join()
            spend_b.join()
            # Process b hears of the other's recharges at its next refresh of the account.
            _wait(lambda: _call(b.http_port, "GET", "/me")[1]["auto_recharge"]["this_month"] >= recharges(), 30)
            _, me = _call(b.http_port, "GET", "/me")
            # One notification each, mailed by whichever process, at least once (a process
            # killed sending one: it goes again once its claim, outbox.LEASE, ends).
            _wait(lambda: len({m["Message-ID"] for _, m in box.messages}) >= recharges(), LEASE + 30)
        finally:
            a.kill()
            assert b.terminate() == 0        # its lease back in the free packages
        assert first_a.ok and first_b.ok and spend_a.ok and spend_b.ok and again.ok
        spent = int(r.hget("hlrsmpp:tot:acme", "c"))
        made = recharges()
        # Credit went below 2 each time the spending passed 3, 6, 9...: one package each time.
        assert made == (spent - 1) // (3 * M) >= 4
        ledger = [json.loads(e) for e in r.lrange("hlrsmpp:ledger:acme", 0, -1)]
        assert [e[1] for e in ledger] == ["top_up"] + ["auto_recharge"] * made
        assert [e[3] for e in ledger[1:]] == [f"credit below 2: {k} of 100 in {me['auto_recharge']['month']}"
                                              for k in range(1, made + 1)]
        # Credit exact: the ledger less the lookups' cost, in the free packages and the
        # leases unspent (a killed process's, until another reaps it).
        free = sum(int(p["c"]) for p in json.loads(r.hget("hlrsmpp:acct:acme", "pk")))
        leased = sum(int(v) * (1 if f.endswith(b":g") else -1) for f, v in r.hgetall("hlrsmpp:lease:acme").items())
        assert free + leased == 5 * M + 3 * M * made - spent
        assert int(r.hget("hlrsmpp:ar:acme", me["auto_recharge"]["month"])) == made
        assert me["auto_recharge"]["this_month"] == made
        keys = sorted(k.decode() for k in r.hkeys("hlrsmpp:notif:acme"))
        assert keys == sorted(f"auto_recharge:{me['auto_recharge']['month']}:{k}" for k in range(1, made + 1))
        assert len({m["Message-ID"] for _, m in box.messages}) == made
        assert {m["Subject"] for _, m in box.messages} == {
            f"[hlrsmpp] acme: credit recharged by 3 ({k} of 100 in {me['auto_recharge']['month']})"
            for k in range(1, made + 1)}
