"""An account serves itself: network names beside network codes, its own view (/me), its
statistics from per-day rollups. Real server, real clients, real SQLite."""
from __future__ import annotations

import csv
import io

from aiohttp import ClientSession

from http_client import ApiClient, basic, clients
from hlrsmpp.hlr.networks import DEFAULT_DIR, load_network_names

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
