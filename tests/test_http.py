"""HTTP interface, the AMS HLR and SMSPAY prepaid APIs, /metrics and /healthz: a real aiohttp client against
a real server (make_server). Nothing here depends on what a number resolves to."""
from __future__ import annotations

import asyncio
import re
import time
from datetime import date, timedelta

import aiohttp
import pytest

from hlrsmpp.accounts import AccountBook
from hlrsmpp.server.http.prepaid import PRESETS, Format, Services
from hlrsmpp.domain import Lookup

REPORT_KEYS = ["id", "batchid", "destination", "time", "status", "error_code", "error", "cc", "nnc",
               "isPorted", "p_nnc", "isRoaming", "r_cc", "r_nnc"]
ERR_NAMES = {11: "ABSENT_SUBSCRIBER", 12: "UNKNOWN_SUBSCRIBER", 13: "UNIDENTIFIED_SUBSCRIBER",
             14: "TIMEOUT", 15: "PROVIDER_GENERAL_ERROR", 16: "NO_RESPONSE", 17: "SYSTEM_FAILURE",
             18: "INVALID_MSISDN", 19: "CALL_BARRED", 20: "ILLEGAL_SUBSCRIBER",
             21: "TELESERVICE_NOT_PROVISIONED", 22: "FACILITY_NOT_SUPPORTED",
             23: "SUBSCRIBER_BUSY_FOR_MT_SMS", 24: "UNEXPECTED_DATA_VALUE"}
# The AMS HLR API's error table, verbatim (written here independently of the server's code).
E001 = "ERROR - 001 --> Either Systemid or password is incorrect"
E002 = "ERROR - 002 --> Required parameters are missing or Invalid parameters or invalid values of parameters"
E003 = "ERROR - 003 --> The Account has been Expired"
E004 = "ERROR - 004 --> Insufficient Balance to fulfill the Request"
E005 = "ERROR - 005 --> Invalid Destination Address"
E006 = "ERROR - 006 --> No Coverage for Requested Destination"
E007 = "ERROR - 007 --> System Error Occurred"
HTTP01 = "ERROR - HTTP01 --> Invalid HTTP URL Format"
BATCH_RE = re.compile(r"^BatchId: (\d{1,19})$")
BG = {"BG_MTEL_PORT", "BG_VIVA_PORT", "BG_GLOB_PORT", "BG_NONE"}


def uk(i: int) -> str:
    """A possible UK mobile number (what it resolves to does not matter here)."""
    return f"4474{i:08d}"


def india(i: int) -> str:
    return f"9198{i:08d}"


def bg(i: int) -> str:
    return f"35988{i:07d}"


class Http:
    def __init__(self, st, session: aiohttp.ClientSession):
        self.st, self.session = st, session
        self.base = f"http://127.0.0.1:{st.http_port}"

    async def get(self, path: str, params=None, **kw) -> tuple[int, str, dict]:
        async with self.session.get(self.base + path, params=params, **kw) as r:
            return r.status, await r.text(), r.headers

    async def post(self, path: str, **kw) -> tuple[int, str, dict]:
        async with self.session.post(self.base + path, **kw) as r:
            return r.status, await r.text(), r.headers

    async def lookup(self, numbers, username="demo", password="demo") -> str:
        numbers = numbers if isinstance(numbers, str) else ",".join(numbers)
        status, text, _ = await self.get("/websmpp/hlr/lookup", {
            "username": username, "password": password, "destination": numbers})
        assert status == 200
        return text

    async def report(self, batch_id):
        async with self.session.get(self.base + "/websmpp/hlr/report",
                                    params={"batchid": str(batch_id)}) as r:
            return r.status, await r.json(content_type=None)

    async def prepaid(self, msisdn, user_id="7", service_id="100") -> tuple[int, str]:
        q = {"user_id": user_id, "service_id": service_id, "msisdn": msisdn}
        status, text, _ = await self.get("/users/hlr_prepaid.php", {k: v for k, v in q.items() if v is not None})
        return status, text


@pytest.fixture
async def http():
    sessions = []

    async def factory(st) -> Http:
        s = aiohttp.ClientSession()
        sessions.append(s)
        return Http(st, s)

    yield factory
    for s in sessions:
        await s.close()


def consistent(st, sid: str, initial: float, n: int) -> None:
    """n lookups in the history, and what they cost is exactly the credit spent (lookups
    failed on our side, err 14..17, are refunded: cost 0)."""
    count, cost = st.server.store.totals().get(sid, (0, 0))
    assert count == n
    assert cost == round(initial * 1_000_000) - st.server.book.get(sid).credit
    assert cost <= n * 100_000


def batch_id_of(text: str) -> int:
    m = BATCH_RE.match(text)
    assert m, text
    return int(m.group(1))


def check_row(row: dict, batch_id: int, number: str) -> None:
    assert list(row) == REPORT_KEYS
    assert isinstance(row["id"], int)
    assert all(isinstance(row[k], str) for k in REPORT_KEYS[1:])
    assert row["batchid"] == str(batch_id)
    assert row["destination"] == number
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["time"])
    assert row["status"] in ("DELIVRD", "UNDELIV")
    assert re.fullmatch(r"\d{3}", row["error_code"])
    err = int(row["error_code"])
    assert (row["status"] == "DELIVRD") == (err == 0)
    assert row["error"] == ERR_NAMES.get(err, "")
    assert number.startswith(row["cc"]) and row["cc"]
    assert row["isPorted"] in ("Yes", "No") and row["isRoaming"] in ("Yes", "No")
    assert (row["isPorted"] == "Yes") == bool(row["p_nnc"])
    assert (row["isRoaming"] == "Yes") == bool(row["r_cc"] or row["r_nnc"])


# ------------------------------------------------------------------ AMS HLR API: lookup

async def test_websmpp_single_lookup_and_report(make_server, http):
    st = make_server([{"system_id": "acme", "password": "s3cret", "credit": 10}])
    h = await http(st)
    t0 = time.time()
    batch_id = batch_id_of(await h.lookup(uk(1), "acme", "s3cret"))
    status, row = await h.report(batch_id)
    assert status == 200
    assert isinstance(row, dict)  # one object for a one-number batch
    check_row(row, batch_id, uk(1))
    # The answer came only after the lookup was durable: the store has it.
    rec = st.server.store.lookup(row["id"])
    assert rec is not None and rec["channel"] == "http" and rec["batch_id"] == batch_id
    assert rec["pending"] == 0  # no deliver_sm receipt for HTTP lookups
    assert abs(rec["submitted"] - t0) < 5
    # As the AMS HLR API's sample: compact JSON, "id" a number, the rest strings.
    _, text, headers = await h.get("/websmpp/hlr/report", {"batchid": str(batch_id)})
    assert headers["Content-Type"].startswith("application/json")
    assert text.startswith('{"id":%d,"batchid":"%d"' % (row["id"], batch_id))


async def test_websmpp_batch_of_100(make_server, http):
    st = make_server([{"system_id": "acme", "password": "s3cret", "credit": 100}])
    h = await http(st)
    numbers = [uk(i) for i in range(100)]
    batch_id = batch_id_of(await h.lookup(numbers, "acme", "s3cret"))
    status, rows = await h.report(batch_id)
    assert status == 200 and isinstance(rows, list) and len(rows) == 100
    for row, n in zip(rows, numbers):
        check_row(row, batch_id, n)
    assert len({r["id"] for r in rows}) == 100
    # Charged once each, recorded once each: credit and history agree.
    consistent(st, "acme", 100, 100)


async def test_websmpp_post_form_and_case_insensitive_names(make_server, http):
    st = make_server()
    h = await http(st)
    _, text, _ = await h.post("/websmpp/hlr/lookup",
                              data={"username": "demo", "password": "demo", "destination": f"{uk(1)},{uk(2)}"})
    bid = batch_id_of(text)
    _, rows = await h.report(bid)
    assert [r["destination"] for r in rows] == [uk(1), uk(2)]
    # Query and form together; the AMS HLR API's documentation writes "Password" and
    # "Destination" too.
    _, text, _ = await h.post("/websmpp/hlr/lookup?username=demo", data={"Password": "demo",
                                                                         "Destination": uk(3)})
    batch_id_of(text)
    # A leading '+' (or its form-encoded space) is tolerated.
    _, text, _ = await h.get(f"/websmpp/hlr/lookup?username=demo&password=demo&destination=%2B{uk(4)}")
    _, row = await h.report(batch_id_of(text))
    assert row["destination"] == uk(4)


@pytest.mark.parametrize("query", [
    "", "username=demo&password=demo", "username=demo&destination=447400000001",
    "password=demo&destination=447400000001", "destination=447400000001",
])
async def test_websmpp_http01(make_server, http, query):
    st = make_server()
    h = await http(st)
    status, text, headers = await h.get("/websmpp/hlr/lookup?" + query)
    assert (status, text) == (200, HTTP01)
    assert headers["Content-Type"].startswith("text/plain")


async def test_websmpp_http01_on_unreadable_body(make_server, http):
    st = make_server()
    h = await http(st)
    status, text, _ = await h.post("/websmpp/hlr/lookup", data=b"\xff\xfe garbage",
                                   headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert (status, text) == (200, HTTP01)


async def test_websmpp_errors(make_server, http):
    yesterday = (date.today() - timedelta(days=2)).isoformat()
    st = make_server([
        {"system_id": "ok", "password": "pw", "credit": 10},
        {"system_id": "poor", "password": "pw", "credit": 0.2},
        {"system_id": "old", "password": "pw", "expires": yesterday},
        {"system_id": "india", "password": "pw", "coverage": [91]},
        {"system_id": "off", "password": "pw", "enabled": False},
        {"system_id": "far", "password": "pw", "allowed_ips": ["10.0.0.0/8"]},
        {"system_id": "daily", "password": "pw", "limits": {"per_day": 1}},
        {"system_id": "slow", "password": "pw", "limits": {"min_delay_ms": 60000}},
    ], bans={"after": 0})
    h = await http(st)
    assert await h.lookup(uk(1), "ok", "wrong") == E001
    assert await h.lookup(uk(1), "nobody", "pw") == E001
    assert await h.lookup(uk(1), "off", "pw") == E001
    assert await h.lookup(uk(1), "far", "pw") == E001
    assert await h.lookup([uk(i) for i in range(101)], "ok", "pw") == E002
    assert await h.lookup(",, ,", "ok", "pw") == E002
    assert await h.lookup(uk(1), "old", "pw") == E003
    # 0.2 credit: three numbers are refused as a whole, nothing charged; two pass.
    assert await h.lookup([uk(1), uk(2), uk(3)], "poor", "pw") == E004
    assert st.server.book.get("poor").credit == 200_000
    batch_id_of(await h.lookup([uk(1), uk(2)], "poor", "pw"))
    assert await h.lookup(uk(3), "poor", "pw") == E004
    assert await h.lookup("12", "ok", "pw") == E005
    assert await h.lookup(["abc", "+", "4474000000011234567"], "ok", "pw") == E005
    assert await h.lookup(uk(1), "india", "pw") == E006
    batch_id_of(await h.lookup(india(1), "india", "pw"))
    # Limits: the AMS HLR API has no throttling code; 007 is its "retry later".
    batch_id_of(await h.lookup(uk(1), "daily", "pw"))
    assert await h.lookup(uk(2), "daily", "pw") == E007
    batch_id_of(await h.lookup(uk(1), "slow", "pw"))
    assert await h.lookup(uk(2), "slow", "pw") == E007
    # Nothing refused was charged or recorded.
    totals = st.server.store.totals()
    assert "ok" not in totals and "old" not in totals and "off" not in totals
    consistent(st, "poor", 0.2, 2)
    assert totals["india"][0] == 1


async def test_websmpp_batch_skips_invalid_and_uncovered(make_server, http):
    st = make_server([{"system_id": "india", "password": "pw", "coverage": [91], "credit": 1}])
    h = await http(st)
    bid = batch_id_of(await h.lookup(["12", india(1), uk(1), india(2)], "india", "pw"))
    _, rows = await h.report(bid)
    assert [r["destination"] for r in rows] == [india(1), india(2)]
    consistent(st, "india", 1, 2)
    # Only one accepted: the report is one object.
    bid = batch_id_of(await h.lookup(["12", india(3)], "india", "pw"))
    _, row = await h.report(bid)
    assert isinstance(row, dict) and row["destination"] == india(3)
    # None accepted: the first number's error.
    assert await h.lookup([uk(1), "12"], "india", "pw") == E006
    assert await h.lookup(["12", uk(1)], "india", "pw") == E005


async def test_websmpp_ip_ban(make_server, http):
    st = make_server(bans={"after": 3, "window": 60, "time": 300})
    h = await http(st)
    for _ in range(3):
        assert await h.lookup(uk(1), "demo", "wrong") == E001
    # Banned: even the right password is refused for a while.
    assert await h.lookup(uk(1), "demo", "demo") == E001


async def test_websmpp_report_errors(make_server, http):
    st = make_server()
    h = await http(st)
    for q in ("", "?batchid=", "?batchid=abc", "?batchid=-1", "?batchid=99999999999999999999999"):
        status, text, _ = await h.get("/websmpp/hlr/report" + q)
        assert status in (400, 404), q
        assert "error" in __import__("json").loads(text)
    status, body = await h.report(123456789)
    assert status == 404
    assert body["error"]["code"] == "002" and "no batch 123456789" in body["error"]["message"]


async def test_websmpp_report_enroute_while_pending(make_server, http):
    st = make_server(hlr={"latency_ms": 1200})
    h = await http(st)
    t0 = time.monotonic()
    bid = batch_id_of(await h.lookup([uk(1), uk(2)]))
    assert time.monotonic() - t0 < 1.0  # answered once durable, not after the HLR latency
    _, rows = await h.report(bid)
    for r in rows:
        assert r["status"] == "ENROUTE"
        assert r["error_code"] == "000" and r["error"] == "" and r["nnc"] == ""
        assert r["isPorted"] == "No" and r["isRoaming"] == "No"
    await asyncio.sleep(1.3)
    _, rows = await h.report(bid)
    for r, n in zip(rows, [uk(1), uk(2)]):
        check_row(r, bid, n)


async def test_websmpp_same_engine_as_smpp(make_server, http):
    """A lookup counts the same on both channels: SMPP uses up the day's one lookup."""
    from esme import SmpplibEsme

    st = make_server([{"system_id": "daily", "password": "pw", "limits": {"per_day": 1}, "credit": 5}])
    h = await http(st)

    def smpp_once():
        e = SmpplibEsme(st.smpp_port)
        try:
            e.bind("transmitter", "daily", "pw")
            seq = e.submit(uk(1))
            e.pump(lambda: seq in e.resps)
            return e.resps[seq].status
        finally:
            e.close()

    assert await asyncio.to_thread(smpp_once) == 0
    assert await h.lookup(uk(2), "daily", "pw") == E007
    consistent(st, "daily", 5, 1)


# ------------------------------------------------------------------ SMSPAY prepaid API

def service(**kw) -> dict:
    d = {"service_id": 100, "user_id": 7, "account": "shop"}
    d.update(kw)
    return d


def shop(**kw) -> dict:
    d = {"system_id": "shop", "password": "pw", "credit": 10}
    d.update(kw)
    return d


async def test_prepaid_bg_port(make_server, http):
    st = make_server([shop()], prepaid={"services": [
        service(), service(service_id=101, format="{id} {p_nnc} {isPorted}")]})
    h = await http(st)
    for i in range(20):
        status, answer = await h.prepaid(bg(i))
        assert status == 200 and answer in BG
        # The same number (same answer: deterministic) through a template: consistent.
        _, text = await h.prepaid(bg(i), service_id="101")
        lid, p_nnc, ported = text.split(" ")
        expected = {"28401": "BG_MTEL_PORT", "28403": "BG_VIVA_PORT", "28405": "BG_GLOB_PORT"}
        assert answer == (expected.get(p_nnc, "BG_NONE") if ported == "Yes" else "BG_NONE")
        rec = st.server.store.lookup(int(lid))
        assert rec["msisdn"] == bg(i) and rec["channel"] == "http" and rec["pending"] == 0
    # Charged like any lookup: 40 lookups of 0.1.
    consistent(st, "shop", 10, 40)


async def test_prepaid_invalid_input_and_ban(make_server, http):
    st = make_server([shop()], prepaid={"services": [service()]}, bans={"after": 3})
    h = await http(st)
    # Missing or empty parameters: not guessing, no ban count.
    for q in ({"user_id": None}, {"service_id": None}, {"msisdn": None}, {"msisdn": ""},
              {"user_id": ""}):
        args = {"msisdn": bg(1)} | q
        assert (await h.prepaid(**args))[1] == "INVALID_INPUT"
    _, text, _ = await h.get("/users/hlr_prepaid.php?user_id=7&user_id=7&service_id=100&msisdn=" + bg(1))
    assert text == "INVALID_INPUT"
    assert (await h.prepaid(bg(1)))[1] in BG  # not banned by the above
    # Wrong ids: mismatched parameters, and they count towards the temporary IP ban.
    assert (await h.prepaid(bg(1), user_id="8"))[1] == "INVALID_INPUT"
    assert (await h.prepaid(bg(1), service_id="999"))[1] == "INVALID_INPUT"
    assert (await h.prepaid(bg(1), service_id="abc"))[1] == "INVALID_INPUT"
    assert (await h.prepaid(bg(1)))[1] == "BAN_IP_TEMP"
    # The ban is the server's: the same address cannot log in over the AMS HLR API either.
    assert await h.lookup(uk(1), "shop", "pw") == E001


async def test_prepaid_service_answers(make_server, http):
    yesterday = (date.today() - timedelta(days=2)).isoformat()
    st = make_server(
        [shop(), shop(system_id="old", expires=yesterday), shop(system_id="off", enabled=False),
         shop(system_id="poor", credit=0.1), shop(system_id="adaily", limits={"per_day": 1})],
        prepaid={"services": [
            service(),
            service(service_id=1, allowed_ips=["10.0.0.0/8"]),
            service(service_id=2, allowed_ips=["127.0.0.0/8", "::1"]),
            service(service_id=3, enabled=False),
            service(service_id=4, account="old"),
            service(service_id=5, account="off"),
            service(service_id=6, limits={"per_day": 1}),
            service(service_id=7, limits={"per_week": 1}),
            service(service_id=8, limits={"per_month": 1}),
            service(service_id=9, limits={"min_delay_ms": 60000}),
            service(service_id=10, account="poor"),
            service(service_id=11, account="adaily"),
        ]})
    h = await http(st)

    async def ask(sid, n=1):
        status, text = await h.prepaid(bg(n), service_id=str(sid))
        assert status == 200
        return text

    assert await ask(1) == "INVALID_IP"
    assert await ask(2) in BG
    assert await ask(3) == "SERVICE_DISABLED"
    assert await ask(4) == "SERVICE_DISABLED"
    assert await ask(5) == "SERVICE_DISABLED"
    status, text = await h.prepaid("12")
    assert text == "INVALID_MSISDN"
    status, text = await h.prepaid("35988abc")
    assert text == "INVALID_MSISDN"
    for sid, word in ((6, "LIMIT_DAY"), (7, "LIMIT_WEEK"), (8, "LIMIT_MONTH"), (9, "LIMIT_DELAY")):
        assert await ask(sid, 1) in BG
        assert await ask(sid, 2) == word
    assert await ask(10, 1) in BG
    assert await ask(10, 2) == "LIMIT_EXCEEDED"
    # The account's own limits apply too.
    assert await ask(11, 1) in BG
    assert await ask(11, 2) == "LIMIT_DAY"


async def test_prepaid_refused_by_account_does_not_use_service_quota(make_server, http):
    st = make_server([shop(credit=0)], prepaid={"services": [service(limits={"per_day": 1})]},
                     admin={"token": "t"})
    h = await http(st)
    assert (await h.prepaid(bg(1)))[1] == "LIMIT_EXCEEDED"
    assert (await h.prepaid(bg(1)))[1] == "LIMIT_EXCEEDED"
    status, _, _ = await h.post("/api/v1/accounts/shop/top-up", json={"credit": "1"},
                                headers={"Authorization": "Bearer t"})
    assert status == 200
    assert (await h.prepaid(bg(1)))[1] in BG      # the service's one lookup of the day
    assert (await h.prepaid(bg(2)))[1] == "LIMIT_DAY"


async def test_prepaid_is_synchronous(make_server, http):
    st = make_server([shop()], prepaid={"services": [service()], "timeout": 5}, hlr={"latency_ms": 800})
    h = await http(st)
    t0 = time.monotonic()
    assert (await h.prepaid(bg(1)))[1] in BG
    assert time.monotonic() - t0 >= 0.79


async def test_prepaid_wait_is_capped(make_server, http):
    st = make_server([shop()], prepaid={"services": [service()], "timeout": 0.2}, hlr={"latency_ms": 5000})
    h = await http(st)
    t0 = time.monotonic()
    assert (await h.prepaid(bg(1)))[1] in BG
    assert time.monotonic() - t0 < 2


def _lookup(**kw) -> Lookup:
    d = dict(id=6002, batch_id=None, system_id="a", channel="http", msisdn="359881234567",
             submitted=0.0, done=0.0, cost=0, err=0, cc="359", nnc="28401", ported=False, p_nnc="",
             roaming=False, r_cc="", r_nnc="", map_error=None, pending=0)
    d.update(kw)
    return Lookup(**d)


def test_prepaid_formats():
    bg_port = Format("bg_port", "f")
    assert bg_port.render(_lookup()) == "BG_NONE"
    assert bg_port.render(_lookup(ported=True, p_nnc="28401", nnc="28403")) == "BG_MTEL_PORT"
    assert bg_port.render(_lookup(ported=True, p_nnc="28403")) == "BG_VIVA_PORT"
    assert bg_port.render(_lookup(ported=True, p_nnc="28405")) == "BG_GLOB_PORT"
    assert bg_port.render(_lookup(ported=True, p_nnc="23415")) == "BG_NONE"
    assert Format("{nnc}", "f").render(_lookup()) == "28401"
    assert Format("{status}:{err}:{error}", "f").render(_lookup(err=11)) == "UNDELIV:011:ABSENT_SUBSCRIBER"
    assert Format("network", "f").render(_lookup(ported=True, p_nnc="28405")) == "28405"
    m = Format({"field": "error", "map": {"": "OK", "ABSENT_SUBSCRIBER": "OFF"}, "default": "BAD"}, "f")
    assert [m.render(_lookup(err=e)) for e in (0, 11, 12)] == ["OK", "OFF", "BAD"]
    assert set(PRESETS) >= {"bg_port", "nnc", "network", "status", "receipt"}
    for bad in ("nope", "{nope}", "{nnc.__class__}", "{nnc!r}", "{nnc", "a\n{nnc}", 5,
                {"field": "nope"}, {"field": "nnc", "map": [1]}, {"field": "nnc", "other": 1}):
        with pytest.raises(ValueError):
            Format(bad, "prepaid.services[0].format")


@pytest.mark.parametrize("services, message", [
    ([{"service_id": 1, "user_id": 2}], "account is required"),
    ([{"service_id": 1, "user_id": 2, "account": "nobody"}], "no account 'nobody'"),
    ([{"service_id": "x1", "user_id": 2, "account": "a"}], "service_id: expected a number"),
    ([{"service_id": 1, "user_id": 2, "account": "a", "colour": 1}], "unknown key(s) colour"),
    ([{"service_id": 1, "user_id": 2, "account": "a"}] * 2, "appears twice"),
    ([{"service_id": 1, "user_id": 2, "account": "a", "limits": {"per_day": -1}}], "per_day"),
    ([{"service_id": 1, "user_id": 2, "account": "a", "allowed_ips": ["nope"]}], "allowed_ips"),
    ([{"service_id": 1, "user_id": 2, "account": "a", "format": "{bogus}"}], "unknown field {bogus}"),
])
def test_prepaid_config_errors(services, message):
    from hlrsmpp.accounts import Account
    book = AccountBook()
    book.add(Account.from_config({"system_id": "a", "password": "p"}))
    with pytest.raises(ValueError, match=re.escape(message)):
        Services({"prepaid": {"services": services}}, book)


# ------------------------------------------------------------------ /metrics, /healthz, robustness

async def test_metrics(make_server, http):
    from hlrsmpp import metrics
    st = make_server()
    h = await http(st)
    before = metrics.STATS.http["/api/v1/lookups/{id}", 401]
    await h.get("/api/v1/lookups/123")
    await h.get("/api/v1/lookups/456")
    await h.get("/no/such/page/at/all")
    assert metrics.STATS.http["/api/v1/lookups/{id}", 401] == before + 2
    status, text, headers = await h.get("/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    # Route templates, not paths: bounded cardinality.
    assert re.search(r'hlrsmpp_http_requests_total\{code="401",route="/api/v1/lookups/\{id\}"\} %d\.0'
                     % (before + 2), text), text
    assert "/api/v1/lookups/123" not in text
    assert re.search(r'hlrsmpp_http_requests_total\{code="404",route="unmatched"\}', text)
    # The scrape itself is counted too (on the next one).
    _, text, _ = await h.get("/metrics")
    assert 'route="/metrics"' in text


async def test_healthz(make_server, http):
    st = make_server()
    h = await http(st)
    status, text, _ = await h.get("/healthz")
    assert status == 200
    body = __import__("json").loads(text)
    assert body == {"status": "ok", "checks": {"smpp": True, "storage": True, "hlr": True}}
    st.call(st.server.smpp_server.close)
    status, text, _ = await h.get("/healthz")
    assert status == 503
    assert __import__("json").loads(text)["checks"]["smpp"] is False


@pytest.mark.parametrize("method, path, kw", [
    ("GET", "/websmpp/hlr/lookup?username=%ff%fe&password=%00&destination=%zz", {}),
    ("GET", "/websmpp/hlr/lookup?username=demo&password=demo&destination=" + "9" * 5000, {}),
    ("POST", "/websmpp/hlr/lookup", {"data": b"\x00" * 1000, "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
    ("POST", "/websmpp/hlr/lookup", {"json": {"username": "demo"}}),
    ("GET", "/websmpp/hlr/report?batchid=%00", {}),
    ("GET", "/users/hlr_prepaid.php?user_id=%ff&service_id=1e9&msisdn=%00", {}),
    ("POST", "/api/v1/lookups", {"data": b"{not json", "headers": {"Authorization": "Basic ZGVtbzpkZW1v"}}),
    ("POST", "/api/v1/lookups", {"json": [1, 2], "headers": {"Authorization": "Basic ZGVtbzpkZW1v"}}),
    ("POST", "/api/v1/lookups", {"json": {"numbers": [None]}, "headers": {"Authorization": "Basic ZGVtbzpkZW1v"}}),
    ("GET", "/api/v1/lookups/" + "9" * 40, {"headers": {"Authorization": "Basic ZGVtbzpkZW1v"}}),
    ("GET", "/api/v1/history?since=yesterday", {"headers": {"Authorization": "Basic ZGVtbzpkZW1v"}}),
    ("GET", "/api/v1/history?limit=-5&after=x", {"headers": {"Authorization": "Basic ZGVtbzpkZW1v"}}),
    ("GET", "/api/v1/lookups/1", {"headers": {"Authorization": "Basic !!!"}}),
    ("GET", "/api/v1/lookups/1", {"headers": {"Authorization": "Basic " + "QQ=="}}),
    ("DELETE", "/api/v1/lookups", {}),
])
async def test_bad_input_never_crashes(make_server, http, method, path, kw):
    st = make_server()
    h = await http(st)
    async with h.session.request(method, h.base + path, **kw) as r:
        body = await r.text()
        assert r.status < 500, body
        assert "Traceback" not in body
        if path.startswith("/api/"):
            assert "error" in __import__("json").loads(body)
