"""An account serves itself: network names beside network codes, its own view (/me), its
statistics from per-day rollups. Real server, real clients, real SQLite."""
from __future__ import annotations

import csv
import io

from aiohttp import ClientSession

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
    # Read from the rollups, not the history: one row per distinct key.
    rows = st.server.store._reader().execute(
        "SELECT SUM(count), COUNT(*) FROM rollups WHERE system_id = 'acme'").fetchone()
    assert rows[0] == 50 and rows[1] < 50


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
