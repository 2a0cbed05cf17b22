"""An account's own notification settings: PATCH /api/v1/me with its own credentials, and
the console's form on /console/account that makes the same change. Only ``notify``; the
webhook under the lookup callbacks' address rules; applied once durable (in the store)."""
from __future__ import annotations

import pytest

from console_client import Console, console_session
from http_client import ApiClient, basic, clients

pytestmark = pytest.mark.e2e

TOKEN = "operator-token-for-tests"
ACCOUNTS = [{"system_id": "acme", "password": "s3cret", "credit": 10},
            {"system_id": "rival", "password": "other1", "credit": 5,
             "notify": {"email": ["rival@example.com"]}}]
ACME = basic("acme", "s3cret")
NOTIFY = {"email": ["ops@example.com", "night@example.com"], "webhook": "https://hooks.example.com/hlr"}


@pytest.fixture
def st(make_server):
    return make_server(ACCOUNTS, admin={"token": TOKEN})


def _stored(st, system_id: str):
    """The account's notify as the store holds it (what a restart reads back)."""
    return st.server.store.account_records()[system_id].get("notify")


async def test_an_account_sets_and_clears_its_own_notification_settings(st):
    async with clients(ApiClient) as make:
        api = await make(st)
        status, body, _ = await api.call("PATCH", "/me", ACME, json={"notify": NOTIFY})
        assert status == 200 and body["notify"] == NOTIFY and body["system_id"] == "acme"
        status, body, _ = await api.call("GET", "/me", ACME)
        assert status == 200 and body["notify"] == NOTIFY
        assert _stored(st, "acme") == NOTIFY
        assert dict(st.server.book.get("acme").settings.notify)["webhook"] == NOTIFY["webhook"]
        status, body, _ = await api.call("PATCH", "/me", ACME, json={"notify": None})
        assert status == 200 and body["notify"] is None and not _stored(st, "acme")
    # Another account's settings are not touched.
    assert _stored(st, "rival") == {"email": ["rival@example.com"]}


@pytest.mark.parametrize("body, words", [
    ({"credit": 100}, "changes only notify"),
    ({"price": "0"}, "changes only notify"),
    ({"enabled": True}, "changes only notify"),
    ({"notify": {"email": ["ops@example.com"]}, "limits": {"per_day": 10 ** 6}}, "changes only notify"),
    ({}, "changes only notify"),
    ({"notify": {"email": ["not an address"]}}, "email"),
    ({"notify": {"sms": ["447400123456"]}}, "sms"),
    ({"notify": {"webhook": "ftp://example.com/x"}}, "webhook"),
    ({"notify": {"webhook": "http://127.0.0.1:8080/hook"}}, "notify: webhook: a loopback, private"),
    ({"notify": {"webhook": "http://10.1.2.3/hook"}}, "notify: webhook: a loopback, private"),
    ({"notify": {"webhook": "http://[::1]/hook"}}, "notify: webhook: a loopback, private"),
    ({"notify": {"webhook": "http://169.254.169.254/latest"}}, "notify: webhook: a loopback, private"),
    ({"notify": {"webhook": "http://0x7f.1/hook"}}, "four decimal numbers"),
])
async def test_anything_but_a_valid_notify_is_refused_and_changes_nothing(st, body, words):
    async with clients(ApiClient) as make:
        api = await make(st)
        status, answer, _ = await api.call("PATCH", "/me", ACME, json=body)
        assert status == 422 and words in answer["error"]["message"], answer
    acc = st.server.book.get("acme")
    assert acc.settings.notify is None and acc.credit == 10_000_000 and acc.settings.enabled
    assert not _stored(st, "acme")


async def test_only_the_account_itself_may_change_its_notify(st):
    async with clients(ApiClient) as make:
        api = await make(st)
        change = {"json": {"notify": NOTIFY}}
        assert (await api.call("PATCH", "/me", None, **change))[0] == 401
        assert (await api.call("PATCH", "/me", basic("acme", "wrong"), **change))[0] == 401
        assert (await api.call("PATCH", "/me", {"Authorization": f"Bearer {TOKEN}"}, **change))[0] == 403
        status, _, _ = await api.call("PATCH", "/me", {**ACME, "Content-Type": "application/json"},
                                      data=b"notify=x")
        assert status == 400
    assert st.server.book.get("acme").settings.notify is None


# ------------------------------------------------------------------ the console's form

async def test_the_console_form_saves_the_notification_settings(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        status, page, _ = await c.get("/console/account")
        assert status == 200 and '<label for="notify-email">' in page and '<label for="notify-webhook">' in page
        status, page, r = await c.post("/console/account/notify", {
            "email": "ops@example.com\nnight@example.com", "webhook": NOTIFY["webhook"]})
        assert status == 200 and str(r.url).endswith("/console/account?saved=notify")
        assert "Notification settings saved." in page and "ops@example.com\nnight@example.com</textarea>" in page
        assert _stored(st, "acme") == NOTIFY
        # A private address is refused with the reason, the typed values kept, nothing changed.
        status, page, _ = await c.post("/console/account/notify", {"email": "x@example.com",
                                                                  "webhook": "http://192.168.1.1/x"})
        assert status == 422 and "a loopback, private or link-local address" in page
        assert 'value="http://192.168.1.1/x"' in page and _stored(st, "acme") == NOTIFY
        # Both emptied: no notifications.
        status, page, _ = await c.post("/console/account/notify", {"email": "", "webhook": ""})
        assert status == 200 and not _stored(st, "acme")


async def test_the_notify_form_without_its_csrf_token_or_as_another_account_changes_nothing(st):
    async with console_session() as s:
        c = Console(st, s)
        await c.login("acme", "s3cret")
        await c.get("/console/account")
        status, page, _ = await c.post("/console/account/notify", {"email": "evil@example.com"}, csrf=False)
        assert status == 403 and "CSRF" in page
        async with console_session() as s2:
            rival = Console(st, s2)
            await rival.login("rival", "other1")
            # Rival's own token, rival's own session: rival's settings change, never acme's.
            status, _, _ = await rival.post("/console/account/notify", {"email": "new@example.com",
                                                                       "system_id": "acme"})
            assert status == 200
            # Acme's token in rival's session is refused.
            status, _, _ = await rival.post("/console/account/notify", {"email": "evil@example.com",
                                                                       "csrf": c.csrf}, csrf=False)
            assert status == 403
        async with console_session() as s3:
            op = Console(st, s3)
            await op.login("admin", TOKEN)
            status, _, _ = await op.post("/console/account/notify", {"email": "evil@example.com"},
                                         allow_redirects=False)
            assert status == 403
    assert not _stored(st, "acme")
    assert _stored(st, "rival") == {"email": ["new@example.com"]}
