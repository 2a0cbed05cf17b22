"""The test bench over the admin API: fault rules (GET/PUT /api/v1/faults) and PDU traces
(GET/PUT /api/v1/accounts/{id}/trace). Real server, real aiohttp client, smpplib as the ESME."""
from __future__ import annotations

from pathlib import Path

import pytest

from http_client import ApiClient, basic, clients, error_code

from esme import SmpplibEsme

TOKEN = "T"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "Zq8!pw"   # never to be seen in a trace
ACME = {"system_id": "acme", "password": PASSWORD}


class Api(ApiClient):

    async def call(self, method: str, path: str, headers=ADMIN, **kw):
        status, body, _ = await super().call(method, path, headers, **kw)
        return status, body


@pytest.fixture
async def api():
    async with clients(Api) as factory:
        yield factory






def bound(st, account=ACME) -> SmpplibEsme:
    esme = SmpplibEsme(st.smpp_port)
    esme.bind("transceiver", system_id=account["system_id"], password=account["password"])
    return esme


# ------------------------------------------------------------------ faults

async def test_faults_round_trip(make_server, api):
    st = make_server([ACME], admin={"token": TOKEN})
    a = await api(st)
    assert await a.call("GET", "/faults") == (200, {"faults": []})
    rules = [{"action": "status", "prefix": "+4477", "status": "RTHROTTLED"},
             {"action": "delay_receipt", "account": "acme", "delay_ms": [100, 200], "percent": 50,
              "seed": 7},
             {"action": "close", "after": 10},
             {"action": "generic_nack", "status": 8}]
    want = [{"action": "status", "prefix": "4477", "status": "RTHROTTLED", "seed": 0},
            {"action": "delay_receipt", "account": "acme", "percent": 50.0, "delay_ms": [100.0, 200.0],
             "seed": 7},
             {"action": "close", "after": 10, "seed": 2},
             {"action": "generic_nack", "status": "RSYSERR", "seed": 3}]
    assert await a.call("PUT", "/faults", json={"faults": rules}) == (200, {"faults": want})
    assert await a.call("GET", "/faults") == (200, {"faults": want})
    assert st.server.faults.active and len(st.server.faults.faults) == 4
    # What GET answers is itself a valid PUT (same rules, same seeds).
    assert await a.call("PUT", "/faults", json={"faults": want}) == (200, {"faults": want})
    assert await a.call("PUT", "/faults", json={"faults": []}) == (200, {"faults": []})
    assert not st.server.faults.active


async def test_bad_rules_change_nothing(make_server, api):
    st = make_server([ACME], admin={"token": TOKEN})
    a = await api(st)
    good = {"action": "status", "prefix": "4477", "status": "RTHROTTLED"}
    status, body = await a.call("PUT", "/faults", json={"faults": [good]})
    assert status == 200
    before = body
    bad_rules = [
        {"action": "close"},                                    # close needs after >= 1
        {"action": "explode"},
        {"action": "status", "status": "RNOSUCHTHING"},
        {"action": "status", "percent": 150},
        {"action": "status", "percent": "half"},
        {"action": "status", "prefix": "44x"},
        {"action": "status", "after": [1]},
        {"action": "status", "delay_ms": [5, 1]},
        {"action": "status", "delay_ms": [1, 2, 3]},
        {"action": "status", "account": ["acme"]},
        {"action": "status", "colour": "red"},
        "status",
    ]
    for bad in bad_rules:
        status, body = await a.call("PUT", "/faults", json={"faults": [good, bad]})
        assert error_code(status, body, 422) == "invalid_faults", bad
        assert await a.call("GET", "/faults") == (200, before), bad
    # Non-finite numbers (Python's JSON reads them) are refused too: GET must stay JSON.
    for raw in ('{"faults": [{"action": "delay_receipt", "delay_ms": Infinity}]}',
                '{"faults": [{"action": "status", "percent": NaN}]}',
                '{"faults": [{"action": "delay_receipt", "delay_ms": 1e999}]}'):
        status, body = await a.call("PUT", "/faults", data=raw)
        assert error_code(status, body, 422) == "invalid_faults", raw
    status, body = await a.call("PUT", "/faults", json={"faults": [good, {"action": "close"}]})
    assert "faults[1]" in body["error"]["message"]
    # Malformed bodies: 400.
    for raw in ("not json", "[]", '{"faults": {}}', "{}", '{"faults": [], "more": 1}', '{"faults": "x"}'):
        status, body = await a.call("PUT", "/faults", data=raw)
        assert error_code(status, body, 400) == "bad_request", raw
    assert await a.call("GET", "/faults") == (200, before)
    assert len(st.server.faults.faults) == 1


async def test_faults_are_the_operators(make_server, api):
    st = make_server([ACME], admin={"token": TOKEN})
    a = await api(st)
    account = basic("acme", PASSWORD)
    for method, kw in (("GET", {}), ("PUT", {"json": {"faults": []}})):
        status, body = await a.call(method, "/faults", headers=account, **kw)
        assert error_code(status, body, 401) == "unauthorized"
        status, body = await a.call(method, "/faults", headers={"Authorization": "Bearer wrong"}, **kw)
        assert error_code(status, body, 401) == "unauthorized"
    st2 = make_server([ACME])   # no admin token: the operator API is off
    b = await api(st2)
    status, body = await b.call("PUT", "/faults", json={"faults": []})
    assert error_code(status, body, 403) == "admin_disabled"


async def test_status_fault_put_over_http_reaches_smpp(make_server, api):
    st = make_server([ACME], admin={"token": TOKEN})
    a = await api(st)
    esme = bound(st)
    try:
        before = esme.submit("447712345678")
        esme.pump(lambda: before in esme.resps)
        assert esme.resps[before].status == 0
        status, _ = await a.call("PUT", "/faults", json={"faults": [
            {"action": "status", "prefix": "4477", "status": "RTHROTTLED"}]})
        assert status == 200
        hit, miss = esme.submit("447712345678"), esme.submit("447912345678")
        esme.pump(lambda: hit in esme.resps and miss in esme.resps)
        assert esme.resps[hit].status == 0x58      # ESME_RTHROTTLED, as the rule says
        assert esme.resps[miss].status == 0        # another prefix: a lookup as usual
        status, _ = await a.call("PUT", "/faults", json={"faults": []})
        assert status == 200
        after = esme.submit("447712345678")
        esme.pump(lambda: after in esme.resps)
        assert esme.resps[after].status == 0
        st.persist()
        assert st.server.store.totals()["acme"][0] == 3   # the faulted submit was no lookup
    finally:
        esme.close()


# ------------------------------------------------------------------ PDU trace

async def test_trace_in_memory(make_server, api):
    st = make_server([ACME], admin={"token": TOKEN})
    a = await api(st)
    assert await a.call("GET", "/accounts/acme/trace") == (
        200, {"account": "acme", "trace": False, "lines": []})
    # A session bound before tracing starts is traced from then on.
    early = bound(st)
    status, body = await a.call("PUT", "/accounts/acme/trace", json={"trace": True})
    assert status == 200 and body["account"] == "acme" and body["trace"] is True
    seq = early.submit("447911000001")
    early.pump(lambda: seq in early.resps and early.receipts)
    early.close()
    # And a session bound afterwards, from its bind.
    esme = bound(st)
    seq = esme.submit("447911000002")
    esme.pump(lambda: seq in esme.resps and esme.receipts)
    esme.close()
    status, body = await a.call("GET", "/accounts/acme/trace")
    assert status == 200 and body["trace"] is True
    lines = body["lines"]
    text = "\n".join(lines)
    assert "trace started" in text
    assert "< bind_transceiver " in text and "password=<hidden>" in text
    assert text.count("< submit_sm ") == 2 and "> submit_sm_resp " in text
    assert "> deliver_sm " in text and "< deliver_sm_resp " in text
    assert PASSWORD not in text and PASSWORD.encode().hex() not in text.replace(" ", "")
    # The account's settings say so (durably).
    status, acc = await a.call("GET", "/accounts/acme")
    assert acc["trace"] is True
    status, body = await a.call("GET", "/accounts/acme/trace", params={"limit": "2"})
    assert body["lines"] == lines[-2:]
    for bad in ("0", "10001", "x", "-1"):
        status, body = await a.call("GET", "/accounts/acme/trace", params={"limit": bad})
        assert error_code(status, body, 400) == "bad_request", bad
    # Off: no more entries, the ring is gone.
    status, body = await a.call("PUT", "/accounts/acme/trace", json={"trace": False})
    assert (status, body["trace"], body["lines"]) == (200, False, [])
    esme = bound(st)
    esme.close()
    assert (await a.call("GET", "/accounts/acme/trace"))[1]["lines"] == []


async def test_trace_to_a_named_file(make_server, api, tmp_path):
    st = make_server([ACME], admin={"token": TOKEN})
    a = await api(st)
    status, body = await a.call("PUT", "/accounts/acme/trace", json={"trace": "acme.trace"})
    path = Path(st.cfg["storage"]["path"]) / "traces" / "acme.trace"
    assert status == 200 and body["trace"] == str(path)
    assert path.is_file()
    esme = bound(st)
    seq = esme.submit("447911000001")
    esme.pump(lambda: seq in esme.resps)
    esme.close()
    st.persist()
    text = path.read_text()
    assert "< submit_sm " in text and "< bind_transceiver " in text and PASSWORD not in text
    status, body = await a.call("GET", "/accounts/acme/trace")
    assert body["trace"] == str(path) and any("submit_sm" in line for line in body["lines"])
    # From a file back to memory: a new sink, the file no longer grows.
    size = path.stat().st_size
    status, body = await a.call("PUT", "/accounts/acme/trace", json={"trace": True})
    assert status == 200 and body["trace"] is True
    esme = bound(st)
    esme.close()
    assert path.stat().st_size == size
    assert any("bind_transceiver" in line for line in (await a.call("GET", "/accounts/acme/trace"))[1]["lines"])


async def test_trace_names_never_paths(make_server, api, tmp_path):
    st = make_server([ACME], admin={"token": TOKEN})
    a = await api(st)
    for name in ("x/../y", "../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "", ".hidden",
                 "x" * 65, "a..b", "tr ace", "caf\u00e9", "nul\x00"):
        status, body = await a.call("PUT", "/accounts/acme/trace", json={"trace": name})
        assert error_code(status, body, 422) == "invalid_trace", name
    for body_ in ({"trace": 1}, {"trace": None}, {}, {"trace": True, "x": 1}, []):
        status, body = await a.call("PUT", "/accounts/acme/trace", json=body_)
        assert error_code(status, body, 400) == "bad_request", body_
    status, body = await a.call("PUT", "/accounts/acme/trace", data="nope")
    assert error_code(status, body, 400) == "bad_request"
    assert st.server.book.get("acme").settings.trace is False
    assert not (Path(st.cfg["storage"]["path"]) / "traces").exists()
    assert not list(tmp_path.rglob("y")) and not list(tmp_path.rglob("x"))
    for method, kw in (("GET", {}), ("PUT", {"json": {"trace": True}})):
        status, body = await a.call(method, "/accounts/nobody/trace", **kw)
        assert error_code(status, body, 404) == "not_found"
        account = basic("acme", PASSWORD)
        status, body = await a.call(method, "/accounts/acme/trace", headers=account, **kw)
        assert error_code(status, body, 401) == "unauthorized"
