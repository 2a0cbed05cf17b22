"""The JSON API under /api/v1/: lookups (sync, async, webhooks), lookup and batch by id,
history (filters, pages, CSV), accounts and credit (admin). Real client, real server."""
from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import hmac
import io
import json
import time
from datetime import date, timedelta

import pytest

from http_client import ApiClient, basic, clients
from aiohttp import web

TOKEN = "s3cr3t-admin"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}




def uk(i: int) -> str:
    return f"4474{i:08d}"


def india(i: int) -> str:
    return f"9198{i:08d}"


class Api(ApiClient):
    async def lookup(self, auth, **body):
        return await self.call("POST", "/lookups", headers=auth, json=body)


@pytest.fixture
async def api():
    async with clients(Api) as factory:
        yield factory


def assert_error(status, body, want_status, code, smpp=None):
    assert status == want_status, body
    assert set(body) == {"error"}
    err = body["error"]
    assert {"code", "message", "smpp_status"} <= set(err)
    assert err["code"] == code, err
    assert err["message"]
    if smpp is not ...:
        assert err["smpp_status"] == smpp, err


def consistent(st, sid: str, initial: float, n: int) -> None:
    count, cost = st.server.store.totals().get(sid, (0, 0))
    assert count == n
    assert cost == round(initial * 1_000_000) - st.server.book.get(sid).credit


# ------------------------------------------------------------------ lookups

async def test_sync_lookup(make_server, api):
    st = make_server([{"system_id": "acme", "password": "pw", "credit": 10}])
    a = await api(st)
    status, body, _ = await a.lookup(basic("acme", "pw"), numbers=[uk(1), uk(2), "12"])
    assert status == 200
    assert body["complete"] is True and body["account"] == "acme"
    assert [lk["number"] for lk in body["lookups"]] == [uk(1), uk(2)]
    for lk in body["lookups"]:
        assert lk["status"] in ("DELIVRD", "UNDELIV") and lk["channel"] == "http"
        assert isinstance(lk["id"], str) and lk["batch_id"] == body["batch_id"]
        assert (lk["status"] == "DELIVRD") == (lk["err"] == 0) == lk["reachable"]
        assert lk["cost"] in ("0.1", "0")
    assert body["rejected"] == [{"index": 2, "number": "12", "error": {
        "code": "invalid_destination", "message": "not a possible E.164 number",
        "smpp_status": "ESME_RINVDSTADR"}}]
    # By id and by batch, the same.
    lid = body["lookups"][0]["id"]
    status, one, _ = await a.call("GET", f"/lookups/{lid}", basic("acme", "pw"))
    assert status == 200 and one == body["lookups"][0]
    status, batch, _ = await a.call("GET", f"/batches/{body['batch_id']}", basic("acme", "pw"))
    assert status == 200 and batch["lookups"] == body["lookups"]
    # The AMS HLR API's report sees the same batch.
    async with a.session.get(f"http://127.0.0.1:{st.http_port}/websmpp/hlr/report",
                             params={"batchid": body["batch_id"]}) as r:
        rows = await r.json(content_type=None)
    assert [str(r["id"]) for r in rows] == [lk["id"] for lk in body["lookups"]]
    consistent(st, "acme", 10, 2)
    status, single, _ = await a.lookup(basic("acme", "pw"), number="+" + uk(3))
    assert status == 200 and single["lookups"][0]["number"] == uk(3)


async def test_lookup_errors_match_smpp(make_server, api):
    old = (date.today() - timedelta(days=2)).isoformat()
    st = make_server([
        {"system_id": "ok", "password": "pw", "credit": 10},
        {"system_id": "poor", "password": "pw", "credit": 0.1},
        {"system_id": "old", "password": "pw", "expires": old},
        {"system_id": "india", "password": "pw", "coverage": [91]},
        {"system_id": "daily", "password": "pw", "limits": {"per_day": 1}},
        {"system_id": "slow", "password": "pw", "limits": {"min_delay_ms": 60000}},
        {"system_id": "off", "password": "pw", "enabled": False},
        {"system_id": "far", "password": "pw", "allowed_ips": ["10.0.0.0/8"]},
    ], bans={"after": 0})
    a = await api(st)
    status, body, headers = await a.lookup(None, number=uk(1))
    assert_error(status, body, 401, "unauthorized", None)
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert_error(*(await a.lookup(basic("ok", "nope"), number=uk(1)))[:2], 401, "invalid_login", None)
    assert_error(*(await a.lookup(basic("who", "pw"), number=uk(1)))[:2], 401, "invalid_login", None)
    assert_error(*(await a.lookup(basic("old", "pw"), number=uk(1)))[:2], 403, "expired", "ESME_RACCEXPIRY")
    assert_error(*(await a.lookup(basic("off", "pw"), number=uk(1)))[:2], 403, "disabled", "ESME_RBINDFAIL")
    assert_error(*(await a.lookup(basic("far", "pw"), number=uk(1)))[:2], 403, "ip_not_allowed", "ESME_RBINDFAIL")
    assert_error(*(await a.lookup(basic("ok", "pw"), number="12"))[:2], 422, "invalid_destination", "ESME_RINVDSTADR")
    status, body, _ = await a.lookup(basic("india", "pw"), numbers=[uk(1), uk(2)])
    assert_error(status, body, 422, "no_coverage", "ESME_RCOVERR")
    assert [r["index"] for r in body["error"]["rejected"]] == [0, 1]
    status, body, _ = await a.lookup(basic("poor", "pw"), numbers=[uk(1), uk(2)])
    assert_error(status, body, 402, "no_credit", "ESME_RINSBAL")
    assert st.server.book.get("poor").credit == 100_000  # all or nothing
    assert (await a.lookup(basic("daily", "pw"), number=uk(1)))[0] == 200
    assert_error(*(await a.lookup(basic("daily", "pw"), number=uk(2)))[:2], 429, "limit_day", "ESME_RTHROTTLED")
    assert (await a.lookup(basic("slow", "pw"), number=uk(1)))[0] == 200
    assert_error(*(await a.lookup(basic("slow", "pw"), number=uk(2)))[:2], 429, "limit_delay", "ESME_RTHROTTLED")
    # Malformed requests.
    ok = basic("ok", "pw")
    for body in ({}, {"number": uk(1), "numbers": [uk(2)]}, {"numbers": []},
                 {"numbers": [uk(i) for i in range(101)]}, {"numbers": "447400000001"},
                 {"number": 447400000001}, {"number": uk(1), "colour": "red"},
                 {"number": uk(1), "wait": "yes"}, {"number": uk(1), "timeout": -1},
                 {"number": uk(1), "callback_url": "ftp://example.com/x"},
                 {"number": uk(1), "callback_url": "not a url"}):
        status, resp, _ = await a.lookup(ok, **body)
        assert_error(status, resp, 400, "bad_request", None)
    status, resp, _ = await a.call("POST", "/lookups", ok, data=b"{oops")
    assert_error(status, resp, 400, "bad_request", None)
    status, resp, _ = await a.lookup(ok, number=uk(1), account="daily")
    assert_error(status, resp, 403, "forbidden", None)
    assert "ok" not in st.server.store.totals()  # none of that was charged


async def test_async_lookup_and_timeout(make_server, api):
    st = make_server(hlr={"latency_ms": 1000})
    a = await api(st)
    t0 = time.monotonic()
    status, body, _ = await a.lookup(basic("demo", "demo"), numbers=[uk(1), uk(2)], wait=False)
    assert status == 202 and time.monotonic() - t0 < 0.9
    assert body["complete"] is False
    for lk in body["lookups"]:
        assert lk["status"] == "ENROUTE"
        assert lk["err"] is None and lk["nnc"] is None and lk["ported"] is None
    # Synchronous with a short timeout: answers on time, still pending.
    t0 = time.monotonic()
    status, body2, _ = await a.lookup(basic("demo", "demo"), number=uk(3), timeout=0.2)
    assert status == 200 and body2["complete"] is False and time.monotonic() - t0 < 0.9
    # Synchronous: waits for the result.
    t0 = time.monotonic()
    status, body3, _ = await a.lookup(basic("demo", "demo"), number=uk(4))
    assert status == 200 and body3["complete"] is True and time.monotonic() - t0 >= 0.95
    status, batch, _ = await a.call("GET", f"/batches/{body['batch_id']}", basic("demo", "demo"))
    assert batch["complete"] is True and all(lk["err"] is not None for lk in batch["lookups"])


@contextlib.asynccontextmanager
async def hook_server(hook):
    """A callback receiver on a free loopback port: POST /hook goes to ``hook``."""
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_webhook_retried_with_backoff(make_server, api):
    calls = []
    secret = "whsec-test"

    async def hook(request):
        body = await request.read()
        # Signed: HMAC-SHA256 of "<timestamp>.<body>" under http.webhook_secret.
        stamp = request.headers["X-Hlrsmpp-Timestamp"]
        want = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert request.headers["X-Hlrsmpp-Signature"] == f"sha256={want}"
        assert abs(int(stamp) - time.time()) < 60
        calls.append((time.monotonic(), request.headers.get("X-Hlrsmpp-Attempt"), json.loads(body)))
        return web.Response(status=500 if len(calls) < 3 else 204)

    async with hook_server(hook) as port:
        st = make_server(hlr={"latency_ms": 300},
                         http={"webhook_backoff": 0.1, "webhook_attempts": 5, "webhook_private": True,
                               "webhook_secret": secret})
        a = await api(st)
        status, body, _ = await a.lookup(basic("demo", "demo"), numbers=[uk(1), uk(2)],
                                         callback_url=f"http://127.0.0.1:{port}/hook")
        assert status == 202 and body["complete"] is False
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [c[1] for c in calls] == ["1", "2", "3"]
        assert calls[1][0] - calls[0][0] >= 0.09 and calls[2][0] - calls[1][0] >= 0.19  # doubling
        payload = calls[-1][2]
        assert payload["batch_id"] == body["batch_id"] and payload["complete"] is True
        assert [lk["id"] for lk in payload["lookups"]] == [lk["id"] for lk in body["lookups"]]
        assert all(lk["status"] in ("DELIVRD", "UNDELIV") for lk in payload["lookups"])
        await asyncio.sleep(0.5)
        assert len(calls) == 3  # delivered: no more attempts


async def test_webhook_gives_up(make_server, api):
    st = make_server(http={"webhook_backoff": 0.01, "webhook_attempts": 3, "webhook_private": True})
    a = await api(st)
    status, _, _ = await a.lookup(basic("demo", "demo"), number=uk(1),
                                  callback_url="http://127.0.0.1:9/unreachable")
    assert status == 202
    from hlrsmpp.server.http.api import WEBHOOKS
    hooks = st.server.http_runner.app[WEBHOOKS]
    deadline = time.monotonic() + 10
    while hooks.failed < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert hooks.failed == 1 and hooks.delivered == 0


async def test_callbacks_go_to_public_addresses_only(make_server, api):
    """An account cannot make the server POST into its own network (SSRF): address
    literals are refused at once, names that resolve to such addresses when resolved."""
    calls = []

    async def hook(request):
        calls.append(await request.read())
        return web.Response(status=204)

    async with hook_server(hook) as port:
        st = make_server(http={"webhook_backoff": 0.01, "webhook_attempts": 2})
        a = await api(st)
        for url in (f"http://127.0.0.1:{port}/hook", "http://10.0.0.8/x", "http://[::1]/x",
                    "http://169.254.169.254/latest/meta-data", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x"):
            status, body, _ = await a.lookup(basic("demo", "demo"), number=uk(1), callback_url=url)
            assert status == 400 and "webhook_private" in body["error"]["message"], url
        # A name: accepted, then refused at every attempt, and nothing reaches the hook.
        status, _, _ = await a.lookup(basic("demo", "demo"), number=uk(1),
                                      callback_url=f"http://localhost:{port}/hook")
        assert status == 202
        from hlrsmpp.server.http.api import WEBHOOKS
        hooks = st.server.http_runner.app[WEBHOOKS]
        deadline = time.monotonic() + 10
        while hooks.failed < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert hooks.failed == 1 and hooks.delivered == 0 and calls == []


async def test_lookups_are_private(make_server, api):
    st = make_server([{"system_id": "a", "password": "pw"}, {"system_id": "b", "password": "pw"}],
                     admin={"token": TOKEN})
    a = await api(st)
    _, body, _ = await a.lookup(basic("a", "pw"), number=uk(1))
    lid, bid = body["lookups"][0]["id"], body["batch_id"]
    assert_error(*(await a.call("GET", f"/lookups/{lid}", basic("b", "pw")))[:2], 404, "not_found", None)
    assert_error(*(await a.call("GET", f"/batches/{bid}", basic("b", "pw")))[:2], 404, "not_found", None)
    assert (await a.call("GET", f"/lookups/{lid}", ADMIN))[0] == 200
    assert (await a.call("GET", f"/batches/{bid}", ADMIN))[0] == 200
    for bad in ("abc", "0", "99999999999999999999"):
        assert (await a.call("GET", f"/lookups/{bad}", ADMIN))[0] == 404
    # The operator looks up on an account's behalf; it is that account's lookup.
    status, body, _ = await a.lookup(ADMIN, number=uk(2), account="b")
    assert status == 200 and body["account"] == "b"
    assert (await a.call("GET", f"/lookups/{body['lookups'][0]['id']}", basic("b", "pw")))[0] == 200
    assert_error(*(await a.lookup(ADMIN, number=uk(2)))[:2], 404, "not_found", None)
    assert_error(*(await a.lookup(ADMIN, number=uk(2), account="zz"))[:2], 404, "not_found", None)


# ------------------------------------------------------------------ history

async def test_history_pages_filters_csv(make_server, api):
    st = make_server([{"system_id": "a", "password": "pw", "credit": 100},
                      {"system_id": "b", "password": "pw"}], admin={"token": TOKEN})
    a = await api(st)
    for i in range(5):
        assert (await a.lookup(basic("a", "pw"), number=uk(i)))[0] == 200
    # Time filters have millisecond resolution (ids carry the time): keep clear of it.
    await asyncio.sleep(0.01)
    t_mid = time.time()
    await asyncio.sleep(0.01)
    assert (await a.lookup(basic("a", "pw"), numbers=[uk(10), uk(11)]))[0] == 200
    assert (await a.lookup(basic("b", "pw"), number=uk(20)))[0] == 200
    # Pages of 3, following `next`.
    seen, after = [], "0"
    while True:
        status, page, _ = await a.call("GET", "/history", basic("a", "pw"), params={"limit": "3", "after": after})
        assert status == 200
        seen += page["items"]
        if page["next"] is None:
            break
        after = page["next"]
    assert [lk["number"] for lk in seen] == [uk(i) for i in (0, 1, 2, 3, 4, 10, 11)]
    assert all(lk["account"] == "a" for lk in seen)
    # Time filters.
    _, page, _ = await a.call("GET", "/history", basic("a", "pw"), params={"since": str(t_mid)})
    assert [lk["number"] for lk in page["items"]] == [uk(10), uk(11)]
    iso_mid = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_mid + 1))
    _, page, _ = await a.call("GET", "/history", basic("a", "pw"), params={"until": iso_mid + "Z"})
    assert len(page["items"]) == 7
    today = date.today().isoformat()
    _, page, _ = await a.call("GET", "/history", basic("a", "pw"), params={"until": today})
    assert page["items"] == []
    # An account sees only its own; the operator sees all, or filters.
    assert_error(*(await a.call("GET", "/history", basic("b", "pw"), params={"account": "a"}))[:2],
                 403, "forbidden", None)
    _, page, _ = await a.call("GET", "/history", ADMIN)
    assert len(page["items"]) == 8
    _, page, _ = await a.call("GET", "/history", ADMIN, params={"account": "b"})
    assert [lk["number"] for lk in page["items"]] == [uk(20)]
    # CSV export: every matching lookup, same values as the JSON.
    status, text, headers = await a.call("GET", "/history", basic("a", "pw"), params={"format": "csv"})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["number"] for r in rows] == [lk["number"] for lk in seen]
    assert [r["id"] for r in rows] == [lk["id"] for lk in seen]
    assert rows[0]["cost"] == seen[0]["cost"] and rows[0]["status"] == seen[0]["status"]
    assert rows[0]["ported"] in ("true", "false")
    status, text, _ = await a.call("GET", "/history", ADMIN, params={"format": "csv", "limit": "2"})
    assert len(list(csv.DictReader(io.StringIO(text)))) == 2
    for params in ({"since": "tomorrow"}, {"limit": "0"}, {"limit": "1001"}, {"after": "x"},
                   {"format": "xml"}):
        assert_error(*(await a.call("GET", "/history", ADMIN, params=params))[:2], 400, "bad_request", None)
    # History and credit agree.
    consistent(st, "a", 100, 7)


# ------------------------------------------------------------------ accounts (operator)

async def test_admin_disabled_without_token(make_server, api):
    st = make_server()
    a = await api(st)
    for method, path in (("GET", "/accounts"), ("POST", "/accounts"), ("GET", "/accounts/demo"),
                         ("POST", "/accounts/demo/top-up"), ("POST", "/accounts/demo/disable")):
        status, body, _ = await a.call(method, path, {"Authorization": "Bearer anything"})
        assert_error(status, body, 403, "admin_disabled", None)
        assert "admin.token" in body["error"]["message"]
    # Bearer on a lookup is refused the same way.
    assert_error(*(await a.lookup({"Authorization": "Bearer x"}, number=uk(1)))[:2], 403, "admin_disabled", None)


async def test_admin_auth(make_server, api):
    st = make_server(admin={"token": TOKEN}, bans={"after": 0})
    a = await api(st)
    status, body, headers = await a.call("GET", "/accounts")
    assert_error(status, body, 401, "unauthorized", None)
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(*(await a.call("GET", "/accounts", {"Authorization": "Bearer wrong"}))[:2], 401, "unauthorized", None)
    assert_error(*(await a.call("GET", "/accounts", basic("demo", "demo")))[:2], 401, "unauthorized", None)


async def test_admin_token_guessing_is_banned(make_server, api):
    st = make_server(admin={"token": TOKEN}, bans={"after": 3})
    a = await api(st)
    for _ in range(3):
        assert (await a.call("GET", "/accounts", {"Authorization": "Bearer wrong"}))[0] == 401
    assert_error(*(await a.call("GET", "/accounts", ADMIN))[:2], 403, "ip_banned", "ESME_RBINDFAIL")


async def test_accounts_and_credit(make_server, api):
    st = make_server([{"system_id": "demo", "password": "demo"}], admin={"token": TOKEN})
    a = await api(st)
    status, body, _ = await a.call("GET", "/accounts", ADMIN)
    assert status == 200 and [x["system_id"] for x in body["accounts"]] == ["demo"]
    assert "password" not in body["accounts"][0] and body["accounts"][0]["credit"] is None
    # Create.
    status, acc, headers = await a.call("POST", "/accounts", ADMIN, json={
        "system_id": "acme", "password": "s3cret", "credit": "1", "coverage": [44],
        "limits": {"per_day": 100}})
    assert status == 201 and headers["Location"] == "/api/v1/accounts/acme"
    assert acc["credit"] == "1" and acc["coverage"] == ["44"] and "password" not in acc
    assert acc["counters"] == {"day": 0, "week": 0, "month": 0}
    assert (await a.call("POST", "/accounts", ADMIN, json={"system_id": "acme", "password": "x"}))[0] == 409
    for bad in ({"system_id": "x"}, {"system_id": "y", "password": "waytoolongpassword"},
                {"system_id": "z", "password": "p", "colour": 1}, {"system_id": "z", "password": "p", "credit": -1},
                {"system_id": "z", "password": "p", "credit": "1e30"},
                {"system_id": "z", "password": "p", "expires": "9999-12-31"}, []):
        status, body, _ = await a.call("POST", "/accounts", ADMIN, json=bad)
        assert status in (400, 422), (bad, body)
        assert body["error"]["code"] in ("invalid_account", "bad_request")
    assert st.server.book.get("z") is None
    # It can look up at once, over HTTP Basic, and is charged.
    status, body, _ = await a.lookup(basic("acme", "s3cret"), numbers=[uk(1), uk(2)])
    assert status == 200
    status, acc, _ = await a.call("GET", "/accounts/acme", ADMIN)
    assert acc["counters"]["day"] == 2
    consistent(st, "acme", 1, 2)
    # Update settings.
    status, acc, _ = await a.call("PATCH", "/accounts/acme", ADMIN, json={"coverage": [91], "price": "0.2"})
    assert status == 200 and acc["coverage"] == ["91"] and acc["price"] == "0.2"
    assert (await a.lookup(basic("acme", "s3cret"), number=uk(3)))[1]["error"]["code"] == "no_coverage"
    for bad in ({"credit": 5}, {"packages": []}, {"system_id": "other"}, {"price": "abc"},
                {"expires": "9999-12-31"}, {"limits": {"per_day": -1}}, {"enabled": "no"}):
        status, body, _ = await a.call("PATCH", "/accounts/acme", ADMIN, json=bad)
        assert_error(status, body, 422, "invalid_account", None)
    assert st.server.book.get("acme").settings.price == 200_000
    assert (await a.call("PATCH", "/accounts/nobody", ADMIN, json={"price": 1}))[0] == 404
    # Top up: a package, durable, in the ledger.
    before = st.server.book.get("acme").credit
    status, body, _ = await a.call("POST", "/accounts/acme/top-up", ADMIN,
                                   json={"credit": "2.5", "note": "invoice 7"})
    assert status == 200 and body["package"]["credit"] == "2.5"
    assert st.server.book.get("acme").credit == before + 2_500_000
    status, led, _ = await a.call("GET", "/accounts/acme/ledger", ADMIN)
    assert [(e["kind"], e["amount"], e["note"]) for e in led["entries"]] == [
        ("top_up", "1", "created"), ("top_up", "2.5", "invoice 7")]
    for bad in ({"credit": 0}, {"credit": "-1"}, {"credit": "abc"}, {"credit": True}, {},
                {"credit": "1.0000001"}, {"credit": "1e12"}, {"credit": 1, "bought": "nope"}):
        status, body, _ = await a.call("POST", "/accounts/acme/top-up", ADMIN, json=bad)
        assert status in (400, 422), (bad, body)
    assert_error(*(await a.call("POST", "/accounts/demo/top-up", ADMIN, json={"credit": 1}))[:2],
                 409, "unlimited_credit", None)
    assert (await a.call("POST", "/accounts/nobody/top-up", ADMIN, json={"credit": 1}))[0] == 404
    # Disable: refused everywhere; enable: back.
    status, acc, _ = await a.call("POST", "/accounts/acme/disable", ADMIN)
    assert status == 200 and acc["enabled"] is False
    assert (await a.lookup(basic("acme", "s3cret"), number=india(1)))[1]["error"]["code"] == "disabled"
    async with a.session.get(f"http://127.0.0.1:{st.http_port}/websmpp/hlr/lookup", params={
            "username": "acme", "password": "s3cret", "destination": india(1)}) as r:
        assert await r.text() == "ERROR - 001 --> Either Systemid or password is incorrect"
    status, acc, _ = await a.call("POST", "/accounts/acme/enable", ADMIN)
    assert status == 200 and acc["enabled"] is True
    assert (await a.lookup(basic("acme", "s3cret"), number=india(1)))[0] == 200
    status, acc, _ = await a.call("PATCH", "/accounts/acme", ADMIN, json={"enabled": False})
    assert acc["enabled"] is False
    assert (await a.call("GET", "/accounts/nobody", ADMIN))[0] == 404
    assert (await a.call("POST", "/accounts/nobody/enable", ADMIN))[0] == 404


async def test_admin_changes_survive_restart(make_server, api, tmp_path):
    accounts = [{"system_id": "demo", "password": "demo"}]
    st = make_server(accounts, admin={"token": TOKEN})
    a = await api(st)
    assert (await a.call("POST", "/accounts", ADMIN, json={"system_id": "new", "password": "pw", "credit": 3}))[0] == 201
    assert (await a.call("POST", "/accounts/new/top-up", ADMIN, json={"credit": 1}))[0] == 200
    assert (await a.lookup(basic("new", "pw"), number=uk(1)))[0] == 200
    credit = st.server.book.get("new").credit
    st.stop()
    st2 = make_server(accounts, admin={"token": TOKEN})  # same data directory
    assert st2.server.book.get("new").credit == credit
    consistent(st2, "new", 4, 1)


async def test_openapi_document_lists_every_route(make_server, api):
    st = make_server()
    a = await api(st)
    status, doc, _ = await a.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    app = st.server.http_runner.app
    # The console's pages are HTML for people (docs/console.md), not routes of the API.
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource.canonical != "/"
              and not r.resource.canonical.startswith("/console")}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented


async def test_hostile_values_are_refused_cleanly(make_server, api):
    st = make_server([{"system_id": "demo", "password": "demo", "credit": 5}], admin={"token": TOKEN})
    a = await api(st)
    # Times far outside the id span; a lone surrogate (valid JSON, invalid UTF-8).
    for params in ({"since": "9999-12-31"}, {"until": "9999-12-31T23:59:59"}, {"since": "1" * 30},
                   {"until": "0"}, {"account": "\x1b\r\nX-Evil: 1", "format": "csv"}):
        status, body, _ = await a.call("GET", "/history", ADMIN, params=params)
        assert status == 200, (params, body)
    status, body, _ = await a.call("POST", "/lookups", basic("demo", "demo"),
                                   data='{"numbers": ["\\ud800", "4474\\u0000"]}')
    assert_error(status, body, 422, "invalid_destination", "ESME_RINVDSTADR")
    for bad in ({"system_id": "a/b", "password": "p"}, {"system_id": "\\ud800", "password": "p"},
                {"system_id": "ok1", "password": "\ud800"}):
        status, body, _ = await a.call("POST", "/accounts", ADMIN, json=bad) if "\\" not in bad["system_id"] \
            else await a.call("POST", "/accounts", ADMIN, data='{"system_id": "\\ud800", "password": "p"}')
        assert_error(status, body, 422, "invalid_account", None)
    status, body, _ = await a.call("POST", "/accounts/demo/top-up", ADMIN,
                                   data='{"credit": 1, "note": "\\udc00"}')
    assert_error(status, body, 400, "bad_request", None)
    # Nothing above broke the store: a lookup still commits.
    assert (await a.lookup(basic("demo", "demo"), number=uk(1)))[0] == 200
