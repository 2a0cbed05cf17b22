"""The console's SMS composer (a real server, aiohttp's client as the browser; then a real
browser): the live counter is the JSON API's, a sent message is charged per SMS and its
page shows it reach its final state; CSRF, CSP without inline scripts, the wrong account
and an HLR account."""
from __future__ import annotations

import asyncio
import base64
import json
import re
from urllib.parse import quote

import aiohttp
import pytest

from console_client import Console, console_session
from test_console_browser import Page, browser, shots  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e

ACCOUNTS = [{"system_id": "texter", "password": "s3cret", "service": "sms", "credit": 10},
            {"system_id": "other", "password": "other1", "service": "sms", "credit": 10},
            {"system_id": "acme", "password": "hlrpw1", "credit": 10}]


@pytest.fixture
def st(make_server):
    return make_server(ACCOUNTS)


async def _api_count(st, text: str) -> dict:
    """What GET /api/v1/sms/segments says (HTTP Basic, as an integrator calls it)."""
    basic = "Basic " + base64.b64encode(b"texter:s3cret").decode()
    async with aiohttp.ClientSession(headers={"Authorization": basic}) as s:
        async with s.get(f"http://127.0.0.1:{st.http_port}/api/v1/sms/segments", params={"text": text}) as r:
            return await r.json()


async def test_the_counter_is_the_apis_and_works_without_javascript(st):
    text = "Price: 5€ " * 20   # a euro sign is two septets: 200 characters, 220 septets, 2 SMS
    async with console_session() as s:
        c = Console(st, s)
        await c.login("texter", "s3cret")
        status, page, _ = await c.get("/console/sms")
        assert status == 200 and 'href="/console/sms" aria-current="page"' in page
        status, live, r = await c.get("/console/sms/segments?text=" + quote(text, safe=""))
        assert status == 200 and r.content_type == "application/json"
        api = await _api_count(st, text)
        assert json.loads(live) == api
        assert api["segments"] == 2 and api["characters"] == 200 and api["encoding"] == "GSM"
        # "Count" posts the form back with the count (no JavaScript needed), sends nothing.
        status, page, _ = await c.post("/console/sms", {"number": "447700900000", "text": text, "action": "count"})
        assert status == 200 and re.search(r'id="sms-segments">2<', page) and 'id="sms-left">86<' in page
    assert st.server.book.get("texter").credit == 10_000_000


async def test_a_message_sent_is_charged_per_sms_and_reaches_its_final_state(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("texter", "s3cret")
        await c.get("/console/sms")
        status, page, r = await c.post("/console/sms", {"number": "447700900000", "text": "Привет " * 12,
                                                        "action": "send"})
        assert status == 200 and re.search(r"/console/sms/\d+$", str(r.url)), page[:300]
        mid = str(r.url).rsplit("/", 1)[1]
        assert 'data-poll="/console/sms/%s/state"' % mid in page and "UCS2" in page
        for _ in range(100):
            _, state, _ = await c.get(f"/console/sms/{mid}/state")
            if "data-done" in state:
                break
            await asyncio.sleep(0.1)
        assert "DELIVRD" in state and "data-done" in state
        # 84 UCS2 code units: 2 SMS at 1 credit each.
        assert st.server.book.get("texter").credit == 8_000_000
        # An absent subscriber's message is retried until its validity period: ENROUTE now.
        _, page, r = await c.post("/console/sms", {"number": "447700900033", "text": "hi", "action": "send"})
        assert "ENROUTE" in page and "data-done" not in page
        # Refusals say why and cost nothing.
        status, page, _ = await c.post("/console/sms", {"number": "12", "text": "hi", "action": "send"})
        assert status == 422 and "not a valid destination number" in page
        status, page, _ = await c.post("/console/sms", {"number": "447700900000", "text": "", "action": "send"})
        assert status == 422
    assert st.server.book.get("texter").credit == 7_000_000


async def test_csrf_the_wrong_account_and_an_hlr_account(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("texter", "s3cret")
        await c.get("/console/sms")
        # Without its CSRF token a send is refused and nothing is sent.
        status, _, _ = await c.post("/console/sms", {"number": "447700900000", "text": "hi", "action": "send"},
                                    csrf=False)
        assert status == 403
        assert st.server.book.get("texter").credit == 10_000_000
        _, _, r = await c.post("/console/sms", {"number": "447700900000", "text": "mine", "action": "send"})
        mid = str(r.url).rsplit("/", 1)[1]
        # Every page: a CSP without inline scripts; the counter's script is a file of ours.
        for path in ("/console/sms", f"/console/sms/{mid}"):
            _, page, r = await c.get(path)
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert re.search(r"<script(?![^>]*\bsrc=)", page) is None and re.search(r"<[^>]+\son[a-z]+=", page) is None
        assert re.search(r'<script src="/console/static/sms\.js\?v=[^"]+" defer>', (await c.get("/console/sms"))[1])
        status, js, r = await c.get("/console/static/sms.js")
        assert status == 200 and "segments" in js
    async with console_session() as s:
        other = Console(st, s)
        await other.login("other", "other1")
        for path in (f"/console/sms/{mid}", f"/console/sms/{mid}/state"):
            status, page, _ = await other.get(path)
            assert status == 404 and "447700900000" not in page
    async with console_session() as s:
        hlr = Console(st, s)
        await hlr.login("acme", "hlrpw1")
        _, page, _ = await hlr.get("/console/")
        assert "/console/sms" not in page   # no link for an HLR account
        status, page, _ = await hlr.get("/console/sms")
        assert status == 404 and "SMS accounts" in page
        status, _, _ = await hlr.post("/console/sms", {"number": "447700900000", "text": "hi", "action": "send"})
        assert status == 404
    async with console_session() as s:   # nobody: to the login, and no send
        status, _, r = await Console(st, s).get("/console/sms")
        assert "/console/login" in str(r.url)
        status, _, _ = await Console(st, s).post("/console/sms", {"text": "hi"}, csrf=False)
        assert status == 403
    assert st.server.book.get("acme").credit == 10_000_000


@pytest.mark.slow
def test_a_browser_types_sees_the_count_live_sends_and_sees_the_receipt_state(make_server, browser, shots):
    st = make_server(ACCOUNTS, hlr={"latency_ms": 1500})
    p = Page(browser, st, shots)
    p.login("texter", "s3cret")
    p.wait_text("main h1", "Dashboard")
    p.el('nav a[href="/console/sms"]').click()
    p.wait_text("main h1", "Send an SMS")
    p.fill("#number", "447700900000")
    p.fill("#text", "x" * 160)
    p.wait_text("#sms-segments", "1")
    p.wait_text("#sms-left", "0")
    p.el("#text").send_keys("€")    # two septets more: a second SMS
    p.wait_text("#sms-segments", "2")
    assert p.el("#sms-encoding").text == "GSM" and p.el("#sms-characters").text == "161"
    p.shot("sms")
    p.el("#send").click()
    p.wait_text("#sms-status", "ENROUTE")
    p.wait_text("#sms-status", "DELIVRD")   # the page follows the message without a reload
    p.shot("sms-message")
    assert st.server.book.get("texter").credit == 8_000_000
