"""An account serves itself: network names beside network codes, its own view (/me), its
statistics from per-day rollups. Real server, real clients, real SQLite."""
from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import json

from aiohttp import ClientSession

from conftest import free_port
from http_client import ApiClient, basic, clients
from hlrsmpp.hlr.networks import DEFAULT_DIR, load_network_names
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)

import pytest

TOKEN = "s3cr3t-admin"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NAME_OF = {"nnc": "nnc_name", "network": "network_name", "p_nnc": "p_nnc_name", "r_nnc": "r_nnc_name"}


def uk(i: int) -> str:
    return f"4474{i:08d}"


@pytest.fixture
async def api():
    async with clients(ApiClient) as factory:
        yield factory


def test_network_names_from_the_networks_table():
    names = load_network_names(DEFAULT_DIR / "networks.csv")
    assert names["23420"] == "Three" and names["23415"] == "Vodafone"
    assert names["28403"] == "Vivacom"
    assert "" not in names


def _named(view: dict, names: dict) -> bool:
    return all(view[name] == names.get(view[code] or "", "") for code, name in NAME_OF.items())


async def test_network_name_beside_each_network_code(make_server, api):
    # Every number ported and roaming: each of nnc, p_nnc and r_nnc has a network to name.
    st = make_server([{"system_id": "acme", "password": "pw"}], admin={"token": TOKEN},
                     hlr={"mix": {"ported": 100, "roaming": 100}})
    names = st.server.resolver.network_names
    a = await api(st)
    status, body, _ = await a.call("POST", "/lookups", basic("acme", "pw"),
                                   json={"numbers": [uk(i) for i in range(5)], "wait": True})
    assert status == 200, body
    for lk in body["lookups"]:
        assert _named(lk, names), lk
        assert lk["nnc_name"] and lk["p_nnc_name"] and lk["r_nnc_name"], lk
        assert lk["network_name"] == lk["p_nnc_name"]
    # The history, JSON and CSV, names them the same way.
    _, page, _ = await a.call("GET", "/history", basic("acme", "pw"))
    assert [v["id"] for v in page["items"]] == [v["id"] for v in body["lookups"]]
    assert all(_named(v, names) for v in page["items"])
    _, text, _ = await a.call("GET", "/history", basic("acme", "pw"), params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["nnc_name"], r["network_name"], r["p_nnc_name"], r["r_nnc_name"]) for r in rows] == [
        (v["nnc_name"], v["network_name"], v["p_nnc_name"], v["r_nnc_name"]) for v in body["lookups"]]
    # The AMS HLR API's report keeps its own fields, names none.
    async with ClientSession() as s:
        base = f"http://127.0.0.1:{st.http_port}"
        async with s.get(f"{base}/websmpp/hlr/lookup", params={
                "username": "acme", "password": "pw", "destination": uk(9)}) as r:
            batch = (await r.text()).split()[1]
        async with s.get(f"{base}/websmpp/hlr/report", params={"batchid": batch}) as r:
            report = await r.json()
    assert not any(k.endswith("_name") for k in report)


# ------------------------------------------------------------------ /api/v1/me

ACME = {"system_id": "acme", "password": "pw", "credit": "10", "low_credit": "2", "expires": "2099-12-31",
        "limits": {"per_day": 1000}}
OTHER = {"system_id": "other", "password": "pw2"}


async def test_me_with_the_accounts_own_credentials(make_server, api):
    st = make_server([ACME, OTHER], admin={"token": TOKEN})
    a = await api(st)
    assert (await a.call("POST", "/lookups", basic("acme", "pw"), json={"numbers": [uk(1), uk(2)]}))[0] == 200
    status, me, _ = await a.call("GET", "/me", basic("acme", "pw"))
    assert status == 200, me
    assert me["system_id"] == "acme" and me["credit"] == "9.8" and me["low_credit"] == "2"
    assert me["usage"] == {"day": 2, "week": 2, "month": 2}
    assert me["limits"] == {"per_day": 1000} and me["expires"] == "2099-12-31"
    assert me["packages"] == [{"credit": "9.8", "size": "10"}]
    assert "password" not in me and "password_hash" not in me
    # Another account sees itself only; unlimited credit is null.
    status, me, _ = await a.call("GET", "/me", basic("other", "pw2"))
    assert status == 200 and me["system_id"] == "other" and me["credit"] is None
    assert me["usage"] == {"day": 0, "week": 0, "month": 0}
    # Wrong credentials, none, or the operator's token: refused.
    status, body, headers = await a.call("GET", "/me", basic("acme", "wrong"))
    assert status == 401 and "Basic" in headers["WWW-Authenticate"]
    assert (await a.call("GET", "/me"))[0] == 401
    assert (await a.call("GET", "/me", ADMIN))[0] == 403
    assert (await a.call("GET", "/me/stats", basic("other", "wrong")))[0] == 401


async def test_me_counts_towards_the_ip_ban(make_server, api):
    st = make_server([ACME], bans={"after": 3, "window": 60, "time": 300})
    a = await api(st)
    for _ in range(3):
        assert (await a.call("GET", "/me", basic("acme", "nope")))[0] == 401
    status, body, _ = await a.call("GET", "/me", basic("acme", "pw"))
    assert status == 403, body   # banned: even the right password is refused


async def _stats_are_summed_per_day_country_network_status(st, api):
    names = st.server.resolver.network_names
    a = await api(st)
    numbers = [uk(i) for i in range(30)] + [f"3361234{i:04d}" for i in range(20)]
    status, body, _ = await a.call("POST", "/lookups", basic("acme", "pw"), json={"numbers": numbers})
    assert status == 200, body
    assert (await a.call("POST", "/lookups", basic("other", "pw2"), json={"numbers": numbers[:5]}))[0] == 200
    st.persist()
    views = body["lookups"]
    today = views[0]["submitted"][:10]
    want_cost = sum(float(v["cost"]) for v in views)

    async def stats(**params):
        status, out, _ = await a.call("GET", "/me/stats", basic("acme", "pw"), params=params)
        assert status == 200, out
        return out

    by_day = await stats(by="day")
    assert by_day["items"] == [{"day": today, "lookups": 50, "cost": by_day["total"]["cost"]}]
    assert by_day["total"]["lookups"] == 50 and abs(float(by_day["total"]["cost"]) - want_cost) < 1e-9
    by_country = await stats(by="country")
    assert [(i["country"], i["lookups"]) for i in by_country["items"]] == [("33", 20), ("44", 30)]
    by_network = await stats(by="network")
    want: dict = {}
    for v in views:
        want[v["network"]] = want.get(v["network"], 0) + 1
    assert {i["network"]: i["lookups"] for i in by_network["items"]} == want
    assert all(i["network_name"] == names.get(i["network"], "") for i in by_network["items"])
    by_status = await stats(by="status")
    want = {}
    for v in views:
        want[v["err"]] = want.get(v["err"], 0) + 1
    assert {i["err"]: i["lookups"] for i in by_status["items"]} == want
    assert all(i["status"] == ("DELIVRD" if i["err"] == 0 else "UNDELIV") for i in by_status["items"])
    # A range without those days is empty; bad parameters are refused.
    assert (await stats(since="2020-01-01", until="2020-02-01"))["items"] == []
    for params in ({"by": "msisdn"}, {"since": "yesterday"}, {"since": today, "until": today}):
        status, out, _ = await a.call("GET", "/me/stats", basic("acme", "pw"), params=params)
        assert status == 400, out


async def test_stats_from_the_rollups_on_sqlite(make_server, api):
    st = make_server([dict(ACME, credit="100"), OTHER], admin={"token": TOKEN})
    await _stats_are_summed_per_day_country_network_status(st, api)
    # Summed into the rollups within a second or so (the answers above counted the
    # lookups not summed yet as well): one row per day, value and dimension.
    db = st.server.store._reader()
    for _ in range(100):
        rows = db.execute("SELECT dim, SUM(count), COUNT(*) FROM rollup_sums WHERE system_id = 'acme' "
                          "GROUP BY dim ORDER BY dim").fetchall()
        if rows and all(total == 50 for _, total, _ in rows):
            break
        await asyncio.sleep(0.05)
    assert [tuple(r)[:2] for r in rows] == [("c", 50), ("d", 50), ("n", 50), ("s", 50)]
    assert all(n < 50 for _, _, n in rows)


async def test_stats_from_the_rollups_on_redis(make_server, api, redis_url):
    st = make_server([dict(ACME, credit="100"), OTHER], admin={"token": TOKEN},
                     storage={"redis": {"url": redis_url}})
    await _stats_are_summed_per_day_country_network_status(st, api)


# ------------------------------------------------------------------ per-account metrics

async def test_account_lookups_in_metrics_for_marked_and_busiest_accounts(make_server, api, monkeypatch):
    from hlrsmpp import metrics
    monkeypatch.setattr(metrics, "TOP_ACCOUNTS", 1)   # the busiest one only: the bound
    metrics.STATS.account_lookups.clear()
    st = make_server([{"system_id": "marked", "password": "pw", "metrics": True},
                      {"system_id": "busy", "password": "pw"}, {"system_id": "quiet", "password": "pw"}])
    a = await api(st)
    assert (await a.call("POST", "/lookups", basic("busy", "pw"), json={"numbers": [uk(1), uk(2), uk(3)]}))[0] == 200
    assert (await a.call("POST", "/lookups", basic("quiet", "pw"), json={"numbers": [uk(4)]}))[0] == 200
    async with ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{st.http_port}/metrics") as r:
            text = await r.text()
    series = [line for line in text.splitlines() if line.startswith("hlrsmpp_account_lookups_total")]
    assert sorted(series) == ['hlrsmpp_account_lookups_total{account="busy"} 3.0',
                              'hlrsmpp_account_lookups_total{account="marked"} 0.0']


# ------------------------------------------------------------------ notifications

class Mailbox:
    """A real SMTP server (aiosmtpd) on a loopback port, keeping what it receives."""

    def __init__(self, port: int):
        from aiosmtpd.controller import Controller
        self.messages: list = []
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


async def _until(predicate, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture(params=["sqlite", "redis"])
def store(request) -> dict:
    """The server's storage: the embedded SQLite store, or a real redis-server."""
    if request.param == "sqlite":
        return {}
    return {"storage": {"redis": {"url": request.getfixturevalue("redis_url")}}}


NOTIFIED = {"system_id": "acme", "password": "pw", "credit": "1", "low_credit": "0.75",
            "notify": {"email": ["ops@example.com"]}}
QUICK = {"retry_min": 0.2, "retry_max": 1.0}


async def _spend_below(a, threshold: float) -> None:
    """Look up, one number at a time, until the account's credit is below ``threshold``."""
    i = 0
    while float((await a.call("GET", "/me", basic("acme", "pw")))[1]["credit"]) >= threshold:
        status, body, _ = await a.call("POST", "/lookups", basic("acme", "pw"), json={"number": uk(100 + i)})
        assert status == 200, body
        i += 1


async def test_low_credit_mail_once_per_crossing_and_again_after_a_top_up(make_server, api, store):
    port = free_port()
    with Mailbox(port) as box:
        st = make_server([NOTIFIED], admin={"token": TOKEN}, notify=QUICK,
                         smtp={"host": "127.0.0.1", "port": port, "from": "hlr@example.com"}, **store)
        a = await api(st)
        await _spend_below(a, 0.75)
        await _until(lambda: len(box.messages) == 1)
        rcpt, msg = box.messages[0]
        assert rcpt == ["ops@example.com"] and msg["From"] == "hlr@example.com"
        assert "credit below 0.75" in msg["Subject"]
        # Further down: no second mail for the same crossing.
        await _spend_below(a, 0.5)
        st.persist()
        await asyncio.sleep(1.0)
        assert len(box.messages) == 1
        # Nor after a restart (the outbox keeps the crossing).
        st.stop()
        st = make_server([NOTIFIED], admin={"token": TOKEN}, notify=QUICK,
                         smtp={"host": "127.0.0.1", "port": port, "from": "hlr@example.com"}, **store)
        a = await api(st)
        await _spend_below(a, 0.4)
        await asyncio.sleep(1.0)
        assert len(box.messages) == 1
        # A top-up lifts it above: the next fall is a new crossing, mailed once.
        status, _, _ = await a.call("POST", "/accounts/acme/top-up", ADMIN, json={"credit": "1"})
        assert status == 200
        await _spend_below(a, 0.75)
        await _until(lambda: len(box.messages) == 2)
        _, listed, _ = await a.call("GET", "/me/notifications", basic("acme", "pw"))
        assert [(n["kind"], n["sent"], n["pending"]) for n in listed["items"]] == [
            ("low_credit", ["email"], []), ("low_credit", ["email"], [])]
        assert (await a.call("GET", "/me/notifications", basic("acme", "bad")))[0] == 401


async def test_an_unreachable_smtp_server_delays_no_lookup_and_loses_no_mail(make_server, api, store):
    port = free_port()   # nothing listens there yet
    st = make_server([NOTIFIED], notify=QUICK, smtp={"host": "127.0.0.1", "port": port}, **store)
    a = await api(st)
    await _spend_below(a, 0.75)   # every lookup answered while the mail cannot go
    await _until(lambda: [n["attempts"] >= 2 for n in st.server.store.outbox.list("acme")] == [True])
    pending = st.server.store.outbox.list("acme")[0]
    assert pending["pending"] == ["email"] and pending["error"]
    status, body, _ = await a.call("POST", "/lookups", basic("acme", "pw"), json={"number": uk(999)})
    assert status == 200, body
    with Mailbox(port) as box:   # the server comes up: the mail goes
        await _until(lambda: len(box.messages) == 1)
        await _until(lambda: [n["pending"] for n in st.server.store.outbox.list("acme")] == [[]])
    assert "credit below" in box.messages[0][1]["Subject"]


async def test_notifications_by_signed_webhook(make_server, api):
    from aiohttp import web
    got: list = []

    async def receive(request):
        got.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        st = make_server([dict(NOTIFIED, notify={"webhook": f"http://127.0.0.1:{port}/hook"},
                               limits={"per_day": 5})],
                         notify=QUICK, http={"webhook_private": True, "webhook_secret": "k3y"})
        a = await api(st)
        for i in range(4):   # 80 % of the day's limit
            assert (await a.call("POST", "/lookups", basic("acme", "pw"), json={"number": uk(i)}))[0] == 200
        await _until(lambda: any(b'"limit"' in body for _, body in got))
        headers, body = next((h, b) for h, b in got if b'"limit"' in b)
        event = json.loads(body)
        assert event["event"] == "limit" and event["account"] == "acme"
        assert event["data"] == {"period": "day", "percent": 80, "used": 4, "limit": 5}
        mac = hmac.new(b"k3y", headers["X-Hlrsmpp-Timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["X-Hlrsmpp-Signature"] == f"sha256={mac}"
    finally:
        await runner.cleanup()


async def test_a_finished_cleaning_is_notified_with_its_report(make_server, api):
    port = free_port()
    with Mailbox(port) as box:
        st = make_server([NOTIFIED], notify=QUICK, smtp={"host": "127.0.0.1", "port": port})
        a = await api(st)
        status, job, _ = await a.call("POST", "/clean", dict(basic("acme", "pw"), **{"Content-Type": "text/plain"}),
                                      data=f"{uk(1)}\n{uk(2)}\n{uk(1)}\nnot a number\n".encode())
        assert status == 202, job
        await _until(lambda: len(box.messages) == 1)
        _, listed, _ = await a.call("GET", "/me/notifications", basic("acme", "pw"))
        done = listed["items"][0]
        assert done["kind"] == "cleaning_done" and done["data"]["job"] == job["job"]
        assert done["data"]["status"] == "done" and done["data"]["report"]["counts"]
        assert "file" not in done["data"]["report"] or "/" not in str(done["data"]["report"]["file"])
        assert job["job"] in box.messages[0][1]["Subject"]
