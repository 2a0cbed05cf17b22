"""The console over plain HTTP (a real server, aiohttp's client as the browser): the login,
the sessions and their cookies, CSRF, escaping, and every page and action as the right
account, the wrong account and nobody."""
from __future__ import annotations

import asyncio
import re

import pytest

from console_client import Console, console_session, csrf_of
from test_login_guards import RBINDFAIL, bind

pytestmark = pytest.mark.e2e

TOKEN = "operator-token-for-tests"
ACCOUNTS = [{"system_id": "acme", "password": "s3cret", "credit": 10},
            {"system_id": "rival", "password": "other1", "credit": 5}]


@pytest.fixture
def st(make_server):
    return make_server(ACCOUNTS, admin={"token": TOKEN})


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-id="(\d+)"', page)


async def test_root_redirects_to_the_console(st):
    async with console_session() as s:
        c = Console(st, s)
        status, _, r = await c.get("/", allow_redirects=False)
        assert status == 302 and r.headers["Location"] == "/console/"


async def test_anonymous_is_sent_to_the_login_and_refused_any_action(st):
    async with console_session() as s:
        c = Console(st, s)
        for path in ("/console/", "/console/lookup", "/console/history", "/console/history.csv",
                     "/console/account", "/console/contacts", "/console/contacts/" + "0" * 32, "/console/admin/accounts",
                     "/console/admin/sessions", "/console/admin/testbench", "/console/admin/system",
                     "/console/lookup/123"):
            status, _, r = await c.get(path, allow_redirects=False)
            assert status == 303 and r.headers["Location"].startswith("/console/login?next=/console/"), path
        for path in ("/console/lookup", "/console/contacts", "/console/admin/accounts/acme/top-up"):
            status, _, _ = await c.post(path, {"numbers": "447400123456", "credit": "5"}, allow_redirects=False)
            assert status == 403, path
    assert st.server.book.get("acme").credit == 10_000_000


async def test_login_opens_a_session_in_a_strict_httponly_cookie(st):
    async with console_session() as s:
        c = Console(st, s)
        status, page, r = await c.login("acme", "s3cret")
        assert status == 200 and str(r.url).endswith("/console/") and "Credit left" in page
        cookie = r.history[0].headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie   # plain HTTP here: a Secure cookie would never come back
        assert 'id="credit">10.0<' in page or 'id="credit">10<' in page


async def test_a_wrong_password_is_refused_and_counts_towards_the_smpp_ban(make_server):
    st = make_server(ACCOUNTS, admin={"token": TOKEN}, bans={"after": 3, "window": 60.0, "time": 300.0})
    async with console_session() as s:
        c = Console(st, s)
        for _ in range(3):
            status, page, _ = await c.login("acme", "wrong")
            assert status == 401 and "unknown system_id or wrong password" in page.lower()
        # Banned now: the right password is refused on the console and over SMPP alike.
        status, page, _ = await c.login("acme", "s3cret")
        assert status == 403 and "banned" in page
    assert bind(st.smpp_port, "acme", "s3cret") == RBINDFAIL


async def test_a_wrong_admin_token_is_refused(st):
    async with console_session() as s:
        c = Console(st, s)
        status, _, _ = await c.login("admin", "not-the-token")
        assert status == 401
        status, _, r = await c.login("admin", TOKEN)
        assert status == 200 and str(r.url).endswith("/console/admin/accounts")


async def test_a_login_without_its_csrf_token_is_refused(st):
    async with console_session() as s:
        c = Console(st, s)
        status, _, _ = await c.post("/console/login", {"system_id": "acme", "password": "s3cret"}, csrf=False)
        assert status == 403
        status, _, _ = await c.get("/console/", allow_redirects=False)
        assert status == 303   # no session was opened


async def test_a_post_without_the_csrf_token_changes_nothing(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        status, page, _ = await c.post("/console/lookup", {"numbers": "447400123456"}, csrf=False)
        assert status == 403 and "CSRF" in page
        status, page, _ = await c.post("/console/lookup", {"numbers": "447400123456", "csrf": "x" * 32}, csrf=False)
        assert status == 403
        # A token of another session is no better.
        async with console_session() as s2:
            other = Console(st, s2)
            await other.login("acme", "s3cret")
            status, _, _ = await c.post("/console/lookup", {"numbers": "447400123456", "csrf": other.csrf}, csrf=False)
            assert status == 403
    assert st.server.book.get("acme").credit == 10_000_000


async def test_a_forged_or_tampered_cookie_is_no_session(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        cookie = next(m for m in s.cookie_jar if m.key == "hlrsmpp_console")
        body, mac = cookie.value.split(".")
        forged = body.replace(body[5], "A" if body[5] != "A" else "B") + "." + mac
        async with console_session() as s2:
            s2.cookie_jar.update_cookies({"hlrsmpp_console": forged})
            status, _, _ = await Console(st, s2).get("/console/", allow_redirects=False)
            assert status == 303


async def test_a_new_password_ends_the_sessions_opened_with_the_old_one(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        assert (await c.get("/console/", allow_redirects=False))[0] == 200
        async with s.patch(f"{c.base}/api/v1/accounts/acme", json={"password": "n3w-one"},
                           headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200
        assert (await c.get("/console/", allow_redirects=False))[0] == 303


async def test_logout_ends_the_session(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        status, _, r = await c.post("/console/logout")
        assert str(r.url).endswith("/console/login")
        assert (await c.get("/console/", allow_redirects=False))[0] == 303


async def test_lookup_of_one_number_and_of_a_list(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        status, page, _ = await c.get("/console/lookup")
        assert status == 200 and '<label for="numbers"' in page
        status, page, _ = await c.post("/console/lookup", {"numbers": "447400123456"})
        assert status == 200 and len(_rows(page)) == 1 and "447400123456" in page
        status, page, _ = await c.post("/console/lookup", {"numbers": "447400123456\n919589123456, 12"})
        assert status == 200 and len(_rows(page)) == 2
        assert "<code>12</code>: not a possible E.164 number" in page   # skipped, not charged
        batch = re.search(r"/console/lookup/(\d+)/rows", page).group(1)
        status, rows, _ = await c.get(f"/console/lookup/{batch}/rows")
        assert status == 200 and len(_rows(rows)) == 2 and "data-done" in rows
    assert st.server.book.get("acme").credit == 10_000_000 - 3 * 100_000


async def test_a_lookup_refused_says_why_and_charges_nothing(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("rival", "other1")
        status, page, _ = await c.post("/console/lookup", {"numbers": "\n".join(["447400123456"] * 101)})
        assert status == 422 and "At most 100 numbers" in page, page[page.find("<main"):][:600]
        status, page, _ = await c.post("/console/lookup", {"numbers": "\n".join(["447400123456"] * 51)})
        assert status == 402 and "insufficient credit" in page
    assert st.server.book.get("rival").credit == 5_000_000


async def test_values_are_escaped(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        status, page, _ = await c.post("/console/lookup", {"numbers": "<script>alert(1)</script> 447400123456"})
        assert status == 200
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    async with console_session() as s:
        status, page, r = await Console(st, s).get("/console/login?next=/console/%22%3E%3Cscript%3E")
        assert status == 200 and 'value="/console/&#34;&gt;&lt;script&gt;"' in page


async def test_every_page_has_a_csp_without_inline_scripts(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        for path in ("/console/login", "/console/", "/console/lookup", "/console/history", "/console/account"):
            status, page, r = await c.get(path)
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
            assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
            assert re.search(r"<script(?![^>]*\bsrc=)", page) is None, path   # no inline script
            assert re.search(r"<[^>]+\son[a-z]+=", page) is None, path       # no inline handlers


async def test_another_accounts_request_is_not_found(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        _, page, _ = await c.post("/console/lookup", {"numbers": "447400123456"})
        batch = re.search(r"/console/lookup/(\d+)/rows", page).group(1)
        assert (await c.get(f"/console/lookup/{batch}"))[0] == 200
    async with console_session() as s:
        rival = Console(st, s)
        await rival.login("rival", "other1")
        for path in (f"/console/lookup/{batch}", f"/console/lookup/{batch}/rows"):
            status, page, _ = await rival.get(path)
            assert status == 404 and "447400123456" not in page
        _, page, _ = await rival.get("/console/history")
        assert "447400123456" not in page
        _, csv_text, _ = await rival.get("/console/history.csv")
        assert "447400123456" not in csv_text


async def test_history_lists_pages_filters_and_downloads(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        await c.post("/console/lookup", {"numbers": "447400123456"})
        status, page, _ = await c.get("/console/history")
        assert status == 200 and len(_rows(page)) == 1
        for col in ("Date", "Cost", "Status", "Number", "Operator", "MCC+MNC", "Active", "Reachable", "Ported", "Roaming"):
            assert f">{col}</th>" in page
        status, page, _ = await c.get("/console/history?since=2001-01-01&until=2001-01-02")
        assert status == 200 and _rows(page) == []
        status, page, _ = await c.get("/console/history?since=yesterday")
        assert status == 400 and "expected an ISO 8601 date" in page
        status, text, r = await c.get("/console/history.csv")
        assert status == 200 and r.headers["Content-Type"].startswith("text/csv")
        assert text.splitlines()[0].startswith("id,batch_id,account") and "447400123456" in text


async def test_a_customer_cannot_use_the_operator_pages(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        status, _, r = await c.get("/console/admin/accounts", allow_redirects=False)
        assert status == 303 and r.headers["Location"] == "/console/"
        status, _, _ = await c.post("/console/admin/accounts/acme/top-up", {"credit": "100"}, allow_redirects=False)
        assert status == 403
    assert st.server.book.get("acme").credit == 10_000_000


def test_csrf_of_reads_the_token():
    assert csrf_of('<input type="hidden" name="csrf" value="a&amp;b">') == "a&b"


# ------------------------------------------------------------------ the operator

async def _operator(st, s) -> Console:
    c = Console(st, s)
    status, _, _ = await c.login("admin", TOKEN)
    assert status == 200
    return c


async def test_operator_tops_up_once_per_form_and_the_customer_sees_it(st):
    async with console_session() as s:
        op = await _operator(st, s)
        status, page, _ = await op.get("/console/admin/accounts")
        assert status == 200 and 'data-credit="acme">10.0<' in page or 'data-credit="acme">10<' in page
        status, page, _ = await op.get("/console/admin/accounts/acme")
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
        form = {"credit": "25", "note": "invoice 7", "idempotency_key": key}
        status, page, _ = await op.post("/console/admin/accounts/acme/top-up", form)
        assert status == 200 and "Topped up: credit is now 35" in page
        status, page, _ = await op.post("/console/admin/accounts/acme/top-up", form)   # sent twice
        assert "Already topped up" in page and "invoice 7" in page
        status, page, _ = await op.post("/console/admin/accounts/acme/top-up", {"credit": "-3"})
        assert "credit: expected a positive amount" in page
    assert st.server.book.get("acme").credit == 35_000_000
    async with console_session() as s:
        c = Console(st, s)
        _, page, _ = await c.login("acme", "s3cret")
        assert re.search(r'id="credit">35(\.0)?<', page)


async def test_operator_creates_edits_and_disables_an_account(st):
    async with console_session() as s:
        op = await _operator(st, s)
        await op.get("/console/admin/new-account")
        status, page, _ = await op.post("/console/admin/accounts", {
            "system_id": "newco", "password": "pw-newco", "credit": "3", "price": "0.5",
            "per_day": "100", "coverage": "44, 91", "allowed_ips": ""})
        assert status == 200 and "Account created" in page
        acc = st.server.book.get("newco")
        assert acc.credit == 3_000_000 and acc.settings.limits.per_day == 100 and acc.settings.coverage == {"44", "91"}
        status, page, _ = await op.post("/console/admin/accounts", {"system_id": "newco", "password": "x"})
        assert status == 409 and "already exists" in page
        status, page, _ = await op.post("/console/admin/accounts", {"system_id": "bad id!", "password": "x"})
        assert status == 422 and "system_id" in page
        status, page, _ = await op.post("/console/admin/accounts/newco", {"price": "0.2", "per_day": "abc"})
        assert "per_day: expected a whole number" in page
        status, page, _ = await op.post("/console/admin/accounts/newco", {"price": "0.2", "per_week": "700"})
        assert "Settings saved" in page
        acc = st.server.book.get("newco")
        assert acc.settings.price == 200_000 and acc.settings.limits.per_week == 700 and acc.settings.limits.per_day is None
        status, page, _ = await op.post("/console/admin/accounts/newco/disable")
        assert "Account disabled" in page and not st.server.book.get("newco").settings.enabled
    async with console_session() as s:
        status, _, _ = await Console(st, s).login("newco", "pw-newco")
        assert status == 403


async def test_operator_disconnects_a_bound_session(st):
    from esme import SmpplibEsme
    esme = SmpplibEsme(st.smpp_port)
    esme.bind(system_id="acme", password="s3cret")
    try:
        async with console_session() as s:
            op = await _operator(st, s)
            status, page, _ = await op.get("/console/admin/sessions")
            key = re.search(r"/console/admin/sessions/([0-9a-f]+)/disconnect", page).group(1)
            assert ">acme</a>" in page and ">trx<" in page
            status, page, _ = await op.post(f"/console/admin/sessions/{key}/disconnect")
            assert "Session of acme disconnected" in page
            status, page, _ = await op.post(f"/console/admin/sessions/{key}/disconnect")
            assert "already gone" in page
        assert st.call(lambda: st.server.session_counts()) == {"tx": 0, "rx": 0, "trx": 0}
    finally:
        esme.close()


async def test_operator_test_bench_and_system_pages(st):
    async with console_session() as s:
        op = await _operator(st, s)
        status, page, _ = await op.get("/console/admin/testbench")
        assert status == 200 and 'id="faults"' in page
        status, page, _ = await op.post("/console/admin/testbench/faults", {"faults": "[{\"bogus\": 1}]"})
        assert 'class="error"' in page and st.server.faults.to_config() == []
        status, page, _ = await op.post("/console/admin/testbench/faults", {"faults": "not json"})
        assert "not JSON" in page
        status, page, _ = await op.post("/console/admin/testbench/trace", {"account": "acme", "trace": "memory"})
        assert status == 200 and st.server.book.get("acme").settings.trace is True
        status, page, _ = await op.post("/console/admin/testbench/trace", {"account": "acme", "trace": "file", "file": "../etc/passwd"})
        assert "trace: true, false, or a file NAME" in page
        status, page, _ = await op.get("/console/admin/system")
        assert status == 200 and "Health" in page and "SQLite" in page


async def test_the_operator_is_not_a_customer(st):
    async with console_session() as s:
        op = await _operator(st, s)
        status, _, r = await op.get("/console/lookup", allow_redirects=False)
        assert status == 303 and r.headers["Location"] == "/console/admin/accounts"
        status, _, _ = await op.post("/console/lookup", {"numbers": "447400123456"}, allow_redirects=False)
        assert status == 403


# ------------------------------------------------------------------ contact lists

CSV = "name,numbers\nann,447400123456\nbob,447400123456\ncid,12\ndan,919589123456\n"


async def _upload(c: Console, name: str, content: str, csrf: bool = True):
    import aiohttp
    data = aiohttp.FormData()
    data.add_field("file", content.encode(), filename=name, content_type="text/csv")
    q = f"?csrf={c.csrf}" if csrf else ""
    async with c.session.post(f"{c.base}/console/contacts{q}", data=data) as r:
        text = await r.text()
        return r.status, text, r


async def _wait_cleaned(c: Console, book: str) -> str:
    import asyncio
    for _ in range(200):
        status, state, _ = await c.get(f"/console/contacts/{book}/state")
        assert status == 200
        if "data-done" in state:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError("the cleaning did not finish")


async def test_contact_list_uploaded_cleaned_premium_and_restored(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        await c.get("/console/contacts")
        status, page, r = await _upload(c, "clients <1>.csv", CSV)
        assert status == 200, page
        book = re.search(r"/console/contacts/([0-9a-f]{32})$", str(r.url)).group(1)
        assert "Not cleaned yet" in page and "clients_1_.csv" in page   # the name is only a label
        status, page, _ = await c.post(f"/console/contacts/{book}/clean", {"mode": "premium"})
        assert status == 200
        # Downloads all along the cleaning: the list is the original or the cleaned one,
        # never missing while the cleaned file takes its place.
        done, seen = asyncio.Event(), []

        async def download_meanwhile() -> None:
            while not done.is_set():
                status, _, _ = await c.get(f"/console/contacts/{book}/download?file=list")
                seen.append(status)
        poller = asyncio.ensure_future(download_meanwhile())
        state = await _wait_cleaned(c, book)
        done.set()
        await poller
        assert seen and set(seen) == {200}, seen
        assert "Premium cleaning: finished" in state and 'id="report"' in state
        assert re.search(r"Contacts read</th><td class=\"num\">4<", state)
        assert re.search(r"Duplicates</th><td class=\"num\">1<", state)
        status, cleaned, _ = await c.get(f"/console/contacts/{book}/download?file=list")
        assert "447400123456" in cleaned and cleaned.count("447400123456") == 1 and "cid" not in cleaned
        status, original, _ = await c.get(f"/console/contacts/{book}/download?file=original")
        assert original == CSV
        status, report, r = await c.get(f"/console/contacts/{book}/download?file=report")
        assert r.headers["Content-Type"].startswith("application/json") and '"mode": "premium"' in report
        status, page, _ = await c.post(f"/console/contacts/{book}/restore")
        assert status == 200 and "Not cleaned yet" in page
        _, listed, _ = await c.get(f"/console/contacts/{book}/download?file=list")
        assert listed == CSV
        status, _, _ = await c.get(f"/console/contacts/{book}/download?file=original")
        assert status == 404
    # Premium: the two distinct possible numbers were looked up and charged.
    assert st.server.book.get("acme").credit == 10_000_000 - 2 * 100_000


async def test_contact_list_refusals(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        await c.get("/console/contacts")
        status, page, _ = await _upload(c, "list.csv", "name,phone\nann,447400123456\n")
        assert status == 422 and "numbers" in page
        status, page, _ = await _upload(c, "list.csv", CSV, csrf=False)
        assert status == 403
        status, page, _ = await c.get("/console/contacts")
        assert "No contact list yet" in page


async def test_another_accounts_contact_list_is_not_found(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        await c.get("/console/contacts")
        _, _, r = await _upload(c, "list.csv", CSV)
        book = str(r.url).rsplit("/", 1)[1]
    async with console_session() as s:
        rival = Console(st, s)
        await rival.login("rival", "other1")
        _, page, _ = await rival.get("/console/contacts")
        assert "list.csv" not in page
        for path in (f"/console/contacts/{book}", f"/console/contacts/{book}/state",
                     f"/console/contacts/{book}/download?file=list", f"/console/contacts/{book}/download?file=original"):
            status, page, _ = await rival.get(path)
            assert status == 404 and "447400123456" not in page, path
        for action in ("clean", "restore", "delete"):
            status, _, _ = await rival.post(f"/console/contacts/{book}/{action}", {"mode": "premium"})
            assert status == 404, action
    assert st.server.book.get("rival").credit == 5_000_000
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        status, page, _ = await c.get(f"/console/contacts/{book}")
        assert status == 200 and "Not cleaned yet" in page


async def test_the_dashboard_charts_lookups_per_day_and_tops_from_the_rollups(st):
    async with console_session() as s:
        c = Console(st, s)
        _, page, _ = await c.login("acme", "s3cret")
        assert "<svg" not in page and "Top networks" not in page   # nothing looked up yet
        await c.post("/console/lookup", {"numbers": "447400123456\n447400123456\n919589123456"})
        _, page, _ = await c.get("/console/")
        assert '<svg class="chart"' in page and "3 in all" in page
        assert re.search(r": 2 delivered</title>", page) and re.search(r": 1 undelivered</title>", page)
        top = page.split("Top networks")[1]
        assert "<td>Vodafone</td><td>23415</td><td class=\"num\">2</td>" in top
        assert "TELESERVICE_NOT_PROVISIONED</td><td class=\"num\">1<" in top.split("Top errors")[1]


async def test_over_https_the_session_cookie_is_secure(make_server, tmp_path):
    import ssl
    from certs import Pki
    pki = Pki(tmp_path / "pki")
    st = make_server(ACCOUNTS, admin={"token": TOKEN},
                     http={"tls": {"cert": pki.path("server.pem"), "key": pki.path("server.key")}})
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    async with console_session() as s:
        base = f"https://localhost:{st.http_port}"
        async with s.get(f"{base}/console/login", ssl=ctx) as r:
            token = csrf_of(await r.text())
            assert "Secure" in r.headers["Set-Cookie"]   # the login form's nonce too
        async with s.post(f"{base}/console/login", ssl=ctx, allow_redirects=False,
                          data={"csrf": token, "system_id": "acme", "password": "s3cret"}) as r:
            assert r.status == 303
            cookie = r.headers["Set-Cookie"]
            assert "hlrsmpp_console=" in cookie and "Secure" in cookie and "HttpOnly" in cookie


async def test_the_account_page_shows_limits_smpp_details_and_notification_settings(make_server):
    st = make_server([{"system_id": "acme", "password": "s3cret", "credit": 10, "coverage": [44],
                       "limits": {"per_day": 500}, "allowed_ips": ["127.0.0.1/32"],
                       "notify": {"email": ["ops@example.com", "<b>x@example.com"]}}], admin={"token": TOKEN})
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        status, page, _ = await c.get("/console/account")
        assert status == 200
        assert f"<code>{st.smpp_port}</code>" in page and "<dd>44</dd>" in page and "127.0.0.1/32" in page
        assert "<dd>500</dd>" in page
        assert "ops@example.com\n&lt;b&gt;x@example.com</textarea>" in page
