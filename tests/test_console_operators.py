"""Operator users of the console (admin.users): a name and a scrypt password hash each,
logging in on the one login form, their failures counting towards the address's ban
shared with SMPP; the hash from ``hlrsmpp hash-password --operator``."""
from __future__ import annotations

import subprocess
import sys

import pytest

from console_client import Console, console_session
from http_client import ApiClient, clients
from test_login_guards import RBINDFAIL, bind

from hlrsmpp.accounts.passwords import hash_password, parse_operators, verify_password
from hlrsmpp.config import ConfigError

pytestmark = pytest.mark.e2e

TOKEN = "operator-token-for-tests"
ALICE_PASSWORD = "correct horse battery"
ACCOUNTS = [{"system_id": "acme", "password": "s3cret", "credit": 10}]


def _users(**names) -> list[dict]:
    # A cheaper scrypt than the default (2**10): the tests check logins, not the cost.
    return [{"name": n, "password_hash": hash_password(p, n_log2=10)} for n, p in names.items()]


@pytest.fixture
def st(make_server):
    return make_server(ACCOUNTS, admin={"token": TOKEN, "users": _users(alice=ALICE_PASSWORD)},
                       bans={"after": 3, "window": 60.0, "time": 300.0})


async def test_an_operator_user_logs_in_and_works_as_the_operator(st):
    async with console_session() as s:
        c = Console(st, s)
        status, page, r = await c.login("alice", ALICE_PASSWORD)
        assert status == 200 and str(r.url).endswith("/console/admin/accounts")
        assert '<span class="who">alice</span>' in page
        _, page, _ = await c.get("/console/admin/accounts/acme")
        key = page.split('name="idempotency_key" value="')[1].split('"')[0]
        status, _, _ = await c.post("/console/admin/accounts/acme/top-up", {"credit": "5", "idempotency_key": key})
        assert status == 200
        # Without the form's CSRF token, nothing.
        status, _, _ = await c.post("/console/admin/accounts/acme/top-up",
                                    {"credit": "5", "idempotency_key": key + "x"}, csrf=False)
        assert status == 403
        # An operator is no customer.
        status, _, r = await c.get("/console/history", allow_redirects=False)
        assert status == 303 and r.headers["Location"] == "/console/admin/accounts"
    assert st.server.book.get("acme").credit == 15_000_000


async def test_a_wrong_operator_password_counts_towards_the_ban_shared_with_smpp(st):
    async with console_session() as s:
        c = Console(st, s)
        for _ in range(3):
            status, page, _ = await c.login("alice", "not the password")
            assert status == 401 and "unknown system_id or wrong password" in page.lower()
        status, page, _ = await c.login("alice", ALICE_PASSWORD)
        assert status == 403 and "banned" in page
        status, _, _ = await c.login("admin", TOKEN)   # the token too, from a banned address
        assert status == 403
    assert bind(st.smpp_port, "acme", "s3cret") == RBINDFAIL


async def test_a_login_without_the_forms_token_opens_no_operator_session(st):
    async with console_session() as s:
        c = Console(st, s)
        status, _, _ = await c.post("/console/login", {"system_id": "alice", "password": ALICE_PASSWORD},
                                    csrf=False)
        assert status == 403
        assert (await c.get("/console/admin/accounts", allow_redirects=False))[0] == 303


def _session_cookie(session) -> str:
    return next(m for m in session.cookie_jar if m.key == "hlrsmpp_console").value


async def test_a_removed_user_or_a_new_hash_ends_the_sessions(make_server, tmp_path):
    users = _users(alice=ALICE_PASSWORD, bob="bob's long password")
    st = make_server(ACCOUNTS, admin={"token": TOKEN, "users": users})
    async with console_session() as s:
        alice = Console(st, s)
        await alice.login("alice", ALICE_PASSWORD)
        cookies = {"alice": _session_cookie(s)}
        async with console_session() as s2:
            bob = Console(st, s2)
            await bob.login("bob", "bob's long password")
            cookies["bob"] = _session_cookie(s2)
        async with console_session() as s3:
            admin = Console(st, s3)
            await admin.login("admin", TOKEN)
            cookies["admin"] = _session_cookie(s3)
    st.stop()
    # The same deployment (token, so the same cookie secret), alice gone, bob's password new.
    st2 = make_server(ACCOUNTS, admin={"token": TOKEN, "users": _users(bob="bob's new password!")})
    for who, want in (("alice", 303), ("bob", 303), ("admin", 200)):
        async with console_session() as s:
            s.cookie_jar.update_cookies({"hlrsmpp_console": cookies[who]})
            status, _, _ = await Console(st2, s).get("/console/admin/accounts", allow_redirects=False)
            assert status == want, who


async def test_no_account_takes_an_operators_name(st):
    async with clients(ApiClient) as make:
        api = await make(st)
        status, body, _ = await api.call("POST", "/accounts", {"Authorization": f"Bearer {TOKEN}"},
                                         json={"system_id": "alice", "password": "pw"})
        assert status == 422 and "admin.users" in body["error"]["message"]
    assert st.server.book.get("alice") is None


@pytest.mark.parametrize("users, words", [
    ({"name": "alice"}, "a list"),
    ([{"name": "alice"}], "{name, password_hash}"),
    ([{"name": "admin", "password_hash": "x"}], "not 'admin'"),
    ([{"name": "a b", "password_hash": "x"}], ".name: 1 to 64"),
    ([{"name": "alice", "password_hash": "plain"}], "password_hash: expected a hash"),
    ([{"name": "acme", "password_hash": hash_password("x" * 12, n_log2=10)}], "already an account"),
    (_users(alice="x" * 12) * 2, "already an operator"),
])
def test_bad_operator_users_are_refused_by_name(users, words):
    with pytest.raises(ValueError) as err:
        parse_operators(users, {"acme"})
    assert words in str(err.value)


def test_a_server_with_a_bad_operator_user_does_not_start(make_server):
    with pytest.raises(ConfigError, match=r"admin.users\[0\].name"):
        make_server(ACCOUNTS, admin={"token": TOKEN, "users": [{"name": "admin", "password_hash": "x"}]})


def test_hash_password_operator_prints_a_hash_of_the_password_and_refuses_a_short_one():
    def run(password: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hlrsmpp", "hash-password", "--stdin", "--operator"],
                              input=password + "\n", capture_output=True, text=True, timeout=60)

    p = run(ALICE_PASSWORD)
    assert p.returncode == 0, p.stderr
    encoded = p.stdout.strip()
    assert verify_password(ALICE_PASSWORD, encoded) and not verify_password("other", encoded)
    assert parse_operators([{"name": "alice", "password_hash": encoded}], set()) == {"alice": encoded}
    p = run("short")
    assert p.returncode == 1 and "12 to 256 characters" in p.stderr
